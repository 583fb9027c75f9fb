"""The benchmark renderer: Cycles frames and analytic ground truth that agree with each other.

Runs the renderer as `make bench` does, as a subprocess of Blender's Python, on a tiny clip
(128 px, 4 samples, 3 frames).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import read_image

REPO = Path(__file__).resolve().parents[2]
ICT_MODEL = REPO.parent / "shared" / "assets" / "ict_face_model" / "ict_face_model.npz"
FRAMES, SIZE = 3, 128


def _render(out: Path, env_folder: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bench.render_gt", "--out", str(out), "--style", "occlusion",
               "--seed", "14", "--frames", str(FRAMES), "--size", str(SIZE), "--samples", "4"]
    env = {"BLENDER_USER_RESOURCES": str(env_folder), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if not ICT_MODEL.is_file():
        pytest.skip(f"needs the ICT face model of ../shared ({ICT_MODEL} is absent)")
    out = tmp_path_factory.mktemp("render") / "occlusion"
    result = _render(out, tmp_path_factory.mktemp("blender-user"))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_every_frame_has_an_image_and_ground_truth_and_the_spec_is_reproducible(rendered):
    from bench.groundtruth import RenderedSequence
    from bench.sequences import make_sequence

    done = json.loads((rendered / "done.json").read_text())
    assert done["frames"] == FRAMES and done["image_size"] == SIZE
    assert done["fingerprint"] == make_sequence("occlusion", 14, FRAMES, SIZE).fingerprint()
    sequence = RenderedSequence(rendered)
    for frame in range(FRAMES):
        assert sequence.image_path(frame).is_file()
        truth = sequence.ground_truth(frame)
        assert truth["depth"].shape == (SIZE, SIZE) and truth["face_mask"].any()
        assert truth["vertices"].shape == (14388, 3)


def test_rendered_silhouette_lies_where_the_ground_truth_puts_it(rendered):
    """Camera placement, focal length, image orientation and pixel centres all match: the head
    and box outline in the Cycles frame has the ground truth's area and centroid (to a tenth of
    a pixel or so; a half-pixel slip or a flip would show)."""
    from bench.groundtruth import RenderedSequence

    sequence = RenderedSequence(rendered)
    background = sequence.spec.background
    srgb = np.where(background <= 0.0031308, background * 12.92, 1.055 * background ** (1 / 2.4) - 0.055) * 255
    for frame in range(FRAMES):
        drawn = np.abs(read_image(sequence.image_path(frame))[..., :3] - srgb).max(axis=-1) > 20
        truth = sequence.ground_truth(frame)["surface"] >= 0
        assert (drawn & truth).sum() / (drawn | truth).sum() > 0.95
        drawn_rows, drawn_cols = np.nonzero(drawn)
        truth_rows, truth_cols = np.nonzero(truth)
        assert abs(drawn_cols.mean() - truth_cols.mean()) < 0.25
        assert abs(drawn_rows.mean() - truth_rows.mean()) < 0.25


def test_a_second_run_keeps_the_finished_frames(rendered, tmp_path):
    before = {path.name: path.stat().st_mtime_ns for path in (rendered / "frames").iterdir()}
    timing = json.loads((rendered / "done.json").read_text())["seconds_per_frame"]
    result = _render(rendered, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {path.name: path.stat().st_mtime_ns for path in (rendered / "frames").iterdir()} == before
    assert json.loads((rendered / "done.json").read_text())["seconds_per_frame"] == timing
