"""The preview still: Workbench's render of the mesh laid over the footage frame it belongs to."""
from __future__ import annotations

import bpy
import numpy as np
from conftest import read_image

from faceanything_blender.scene import build_capture, render_preview
from tests.blender.scene_fixtures import (
    FOOTAGE_BLUE,
    FOOTAGE_GREEN,
    fresh_scene,  # noqa: F401 - fixture
    footage_red,
    make_capture,
    pinhole_pixels,
    write_footage,
)


def read_png(path) -> np.ndarray:
    """(H, W, 4) bytes, row 0 at the top."""
    return np.round(read_image(path)).astype(int)


def test_preview_lays_the_mesh_over_its_own_footage_frame(fresh_scene, tmp_path):  # noqa: F811
    size = (360, 288)
    first = write_footage(tmp_path / "footage", 10, size)
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_size=size, frame_count=10)
    build_capture(fresh_scene, capture_dir, footage=str(first), animation="POINT_CACHE")
    engine, frame = fresh_scene.render.engine, fresh_scene.frame_current

    path = render_preview(fresh_scene, tmp_path / "preview" / "preview.png", frame=7)

    assert (fresh_scene.render.engine, fresh_scene.frame_current) == (engine, frame)  # settings put back
    assert fresh_scene.compositing_node_group is None
    rgba = read_png(path)
    assert rgba.shape == (288, 360, 4) and np.all(rgba[..., 3] == 255)
    # Away from the face the footage shows through unchanged: scene frame 7 is footage frame 6.
    assert np.abs(rgba[0, 0, :3] - (footage_red(6), FOOTAGE_GREEN, FOOTAGE_BLUE)).max() <= 2
    covered = np.abs(rgba[..., :3] - rgba[0, 0, :3]).max(axis=2) > 8
    rows, cols = np.nonzero(covered)
    expected = pinhole_pixels(reconstruction.intrinsics[6], reconstruction.vertices[6])
    # The rendered face covers the pixels whose centres the projected mesh covers (anti-aliased edges).
    assert np.abs([cols.min() - expected[:, 0].min(), cols.max() - expected[:, 0].max()]).max() <= 1.0
    assert np.abs([rows.min() - expected[:, 1].min(), rows.max() - expected[:, 1].max()]).max() <= 1.0


def test_preview_without_footage_is_the_mesh_on_transparency(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture", frame_size=(288, 360))
    build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")
    rgba = read_png(render_preview(fresh_scene, tmp_path / "preview.png"))
    assert rgba.shape == (360, 288, 4)
    assert rgba[0, 0, 3] == 0 and rgba[180, 144, 3] == 255  # corner empty, face in the middle
