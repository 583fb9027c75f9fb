"""A capture made with the Face Anything backend goes through the same capture and reconstruction
code as the default backend (the `small` structure with random weights stands in for the released
checkpoint; the dense mesh needs no canonical alignment)."""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.capture_folder import CaptureFolder
from model_runtime.errors import UserError
from model_runtime.network.canonical_alignment import RELEASE_SPACE_ID
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruction_format import load_reconstruction
from tests.fixtures.network_weights import write_random_weights

# Tiny and deterministic: every pixel counts as face, no MediaPipe alignment.
NETWORK_OPTIONS = {"size": "small", "resolution": 84, "window": 2, "overlap": 1, "mask_confidence": 0.0,
                   "align_to_template": False}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("weights"))


def test_network_capture_reconstructs_with_the_dense_mesh(face_clip, weights, tmp_path):
    options = CaptureOptions(frames="0:3", backend="faceanything", device="cpu", checkpoint=str(weights),
                             backend_options=NETWORK_OPTIONS)
    summary = run_capture(face_clip, tmp_path / "cap", options)
    assert summary.frames == summary.frames_with_face == 3
    folder = CaptureFolder(tmp_path / "cap")
    assert folder.canonical_space == RELEASE_SPACE_ID
    assert len(folder.manifest["backend"]["weights_sha256"]) == 64
    maps = folder.frame(1)
    assert maps.frame_size == (640, 360) and maps.depth.shape == maps.mask.shape
    assert maps.landmarks2d is None

    result = load_reconstruction(reconstruct(tmp_path / "cap", ReconstructOptions(mesh="dense")))
    assert result.frame_count == 3 and result.header["canonical_space"] == RELEASE_SPACE_ID
    assert result.vertices.shape[1] > 100 and np.isfinite(result.vertices).all()


def test_the_template_mesh_needs_the_template_space(face_clip, weights, tmp_path):
    options = CaptureOptions(frames="0:1", backend="faceanything", device="cpu", checkpoint=str(weights),
                             backend_options=NETWORK_OPTIONS)
    run_capture(face_clip, tmp_path / "cap", options)
    with pytest.raises(UserError, match="dense"):
        reconstruct(tmp_path / "cap", ReconstructOptions(mesh="template"))
