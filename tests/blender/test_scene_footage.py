"""The footage's movie clip: linked by a relative path beside a saved .blend, and its tracking
camera (what Blender's camera solve uses) carries the capture's intrinsics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import bpy
import numpy as np
import pytest

from faceanything_blender.scene import build_capture
from tests.blender.conftest import REPO
from tests.blender.scene_fixtures import (
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
    write_footage,
)


@pytest.mark.parametrize("framing", [dict(), dict(focal=(440.0, 400.0), principal=(170.25, 150.5))])
def test_tracking_camera_takes_the_capture_intrinsics(fresh_scene, tmp_path, framing):  # noqa: F811
    first = write_footage(tmp_path / "footage", 3, (360, 288))
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=3, **framing)
    built = build_capture(fresh_scene, capture_dir, footage=str(first), animation="POINT_CACHE")
    tracking = bpy.data.movieclips[built["clip"]].tracking.camera
    (fx, _, cx), (_, fy, cy), _ = reconstruction.intrinsics[0]
    assert tracking.focal_length_pixels == pytest.approx(fx, rel=1e-6)
    # The same lens in millimetres as the capture's camera (horizontal sensor fit, 36 mm).
    assert tracking.sensor_width == 36.0
    assert tracking.focal_length == pytest.approx(bpy.data.objects[built["camera"]].data.lens, rel=1e-6)
    # Blender's clip pixels: origin at the bottom-left corner, y up, pixel centres at i + 0.5.
    assert tuple(tracking.principal_point_pixels) == pytest.approx((cx + 0.5, 288 - (cy + 0.5)), abs=1e-3)
    # Blender's pixel aspect (x / y, as the render's) is fy / fx.
    assert tracking.pixel_aspect == pytest.approx(fy / fx, rel=1e-6)
    render = fresh_scene.render
    assert tracking.pixel_aspect == pytest.approx(render.pixel_aspect_x / render.pixel_aspect_y, rel=1e-6)


def test_footage_is_linked_relative_to_a_saved_blend(tmp_path):
    """In a subprocess, so this session stays unsaved: the CLI saves the .blend, builds, saves,
    and the project folder can move with the footage in it."""
    first = write_footage(tmp_path / "project" / "footage", 3, (360, 288))
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=3)
    blend = tmp_path / "project" / "shot.blend"
    script = textwrap.dedent(
        f"""
        import json, bpy
        from faceanything_blender.scene import build_capture
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        built = build_capture(bpy.context.scene, {str(capture_dir)!r}, footage={str(first)!r}, animation="POINT_CACHE")
        print(json.dumps({{"path": bpy.data.movieclips[built["clip"]].filepath}}))
        """
    )
    environment = dict(os.environ, PYTHONPATH=str(REPO), BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["path"] == "//footage/000000.png"


PYAV_SCRIPT = """
import sys, av, numpy as np
with av.open(sys.argv[1]) as container:
    frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(int(sys.argv[3])), container.decode(video=0))]
np.save(sys.argv[2], np.stack(frames))
"""


def test_background_shows_the_frame_the_mesh_was_made_from_on_mpeg1(
    fresh_scene, tmp_path, grid_clip, real_runtime_python  # noqa: F811
):
    """Blender's FFmpeg shows GRID frame 12 for scene frames 1-12; PyAV decodes exactly. After the
    build every captured frame's background is PyAV's picture of that frame."""
    from faceanything_blender.scene.decoding import blender_frames
    from faceanything_blender.scene.timing import capture_timing

    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=20)
    built = build_capture(fresh_scene, capture_dir, footage=str(grid_clip), animation="POINT_CACHE")
    assert any("image sequence" in warning for warning in built["warnings"]), built["warnings"]
    clip = bpy.data.movieclips[built["clip"]]
    assert fresh_scene.camera.data.background_images[0].clip == clip == fresh_scene.active_clip
    assert clip.tracking.tracks.get("FA_chin") is not None  # the tracks went onto the clip it plays

    decoded = tmp_path / "pyav.npy"
    done = subprocess.run([str(real_runtime_python), "-c", PYAV_SCRIPT, str(grid_clip), str(decoded), "20"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    exact = np.load(decoded).astype(np.float32)
    scene_frames = capture_timing(reconstruction.frame_numbers, 25.0).scene_frames
    shown = blender_frames(fresh_scene, clip, [int(frame) for frame in scene_frames])
    for t, picture in enumerate(shown):
        distance = [np.abs(picture - frame).mean() for frame in exact]
        assert int(np.argmin(distance)) == reconstruction.source_indices[t] and distance[t] < 0.5, (t, distance[t])


def test_only_a_clearly_other_frame_counts_as_shown_elsewhere():
    from faceanything_blender.scene.decoding import frames_shown_elsewhere

    frames = [np.full((4, 4, 3), value, np.uint8) for value in (10, 40, 40, 90)]  # frames 1 and 2 alike
    assert frames_shown_elsewhere(frames, frames) == []
    assert frames_shown_elsewhere([frames[3], frames[1], frames[1], frames[3]], frames) == [0]
    nearly = [frame + 1 for frame in frames]  # another decoder's colours: off by one everywhere
    assert frames_shown_elsewhere(nearly, frames) == []
