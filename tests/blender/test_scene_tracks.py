"""The tracked points in the Movie Clip Editor and their visibility: one 2D track per point on
the footage's clip, one marker per captured frame at the CSV export's pixel, disabled where the
point was hidden; the empties carry the same visibility as a keyed ``visible`` property."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import bpy
import numpy as np

from faceanything_blender.scene import build_capture
from faceanything_blender.scene.axes import opencv_pixels_to_clip
from faceanything_blender.scene.timing import capture_timing
from tests.blender.conftest import REPO
from tests.blender.scene_fixtures import (
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
    write_footage,
)


def hide_points(capture_dir: Path, hidden: list[tuple[int, int]]) -> np.ndarray:
    """Mark (capture index, point) pairs as hidden in the reconstruction; returns visible (T, P)."""
    path = capture_dir / "reconstruction" / "points.npz"
    arrays = dict(np.load(path))
    for t, p in hidden:
        arrays["visible"][t, p] = False
    np.savez(path, **arrays)
    return arrays["visible"]


def csv_tracks(capture_dir: Path, runtime_python: Path, tmp_path: Path) -> list[dict]:
    """The runtime's own CSV export of the capture's point tracks."""
    path = tmp_path / "tracks.csv"
    done = subprocess.run(
        [str(runtime_python), "-m", "model_runtime", "export", str(capture_dir), "--tracks-csv", str(path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_markers_equal_the_csv_export_on_every_frame(fresh_scene, tmp_path, real_runtime_python):  # noqa: F811
    first = write_footage(tmp_path / "footage", 14, (360, 288))
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=6, first_source_index=2, step=2)
    hide_points(capture_dir, [(1, 0), (2, 0), (4, 3)])
    built = build_capture(fresh_scene, capture_dir, footage=str(first), animation="POINT_CACHE")
    clip = bpy.data.movieclips[built["clip"]]
    assert built["tracks"] == [built["points"][name] for name in reconstruction.point_names]
    scene_frames = capture_timing(reconstruction.frame_numbers, 25.0).scene_frames.tolist()
    rows = csv_tracks(capture_dir, real_runtime_python, tmp_path)
    assert len(rows) == 6 * len(reconstruction.point_names)
    for row in rows:
        track = clip.tracking.tracks[f"FA_{row['name']}"]
        frame = int(row["frame"])  # the footage frame number is the scene frame
        assert frame in scene_frames
        marker = track.markers.find_frame(frame, exact=True)
        assert marker is not None, f"{track.name} has no marker on frame {frame}"
        # Blender's markers: 0..1 from the bottom-left corner, pixel i spanning [i, i + 1].
        expected = ((float(row["x"]) + 0.5) / 360, 1.0 - (float(row["y"]) + 0.5) / 288)
        assert np.allclose(marker.co, expected, atol=0.0006 / 288), (row, tuple(marker.co))
        assert marker.mute == (row["visible"] == "0"), row
    for track in clip.tracking.tracks:
        assert [m.frame for m in track.markers] == [3, 5, 7, 9, 11, 13]  # one marker per captured frame
    assert sum(m.mute for track in clip.tracking.tracks for m in track.markers) == 3


def test_empties_key_visibility_for_drivers(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=5)
    visible = hide_points(capture_dir, [(2, 1), (3, 1)])
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    empties = [bpy.data.objects[built["points"][name]] for name in reconstruction.point_names]
    # A rig fades a constraint out where the point is hidden: a driver reading ``visible``.
    follower = bpy.data.objects.new("follower", None)
    fresh_scene.collection.objects.link(follower)
    constraint = follower.constraints.new("COPY_LOCATION")
    constraint.target = empties[1]
    driven = constraint.driver_add("influence").driver
    driven.type = "SUM"
    variable = driven.variables.new()
    variable.targets[0].id = empties[1]
    variable.targets[0].data_path = '["visible"]'
    for t in range(5):
        fresh_scene.frame_set(t + 1)
        assert [empty["visible"] for empty in empties] == visible[t].astype(int).tolist(), f"frame {t + 1}"
        assert constraint.influence == (1.0 if visible[t, 1] else 0.0)


def test_a_rerun_rewrites_the_tracks_in_place(fresh_scene, tmp_path):  # noqa: F811
    first = write_footage(tmp_path / "footage", 8, (360, 288))
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=8)
    built = build_capture(fresh_scene, capture_dir, footage=str(first), animation="POINT_CACHE")
    clip = bpy.data.movieclips[built["clip"]]
    shorter, reconstruction = make_capture(tmp_path / "capture", frame_count=4, first_source_index=2)
    again = build_capture(fresh_scene, shorter, footage=str(first), animation="POINT_CACHE")
    assert again["clip"] == clip.name and len(clip.tracking.tracks) == len(reconstruction.point_names)
    for p, name in enumerate(reconstruction.point_names):
        track = clip.tracking.tracks[built["points"][name]]
        assert [m.frame for m in track.markers] == [3, 4, 5, 6]
        expected = opencv_pixels_to_clip(reconstruction.point_pixels[:, p], 360, 288)
        assert np.allclose([tuple(m.co) for m in track.markers], expected, atol=1e-6)


def test_clip_coordinates_match_blenders_own_feature_detector(tmp_path):
    """Blender's detector puts markers on the centre of a bright 5x5 block centred on OpenCV
    pixel (row 10, column 20): the detections centre on `opencv_pixels_to_clip` of (20, 10)."""
    width, height = 64, 48
    image = bpy.data.images.new("block", width, height)
    pixels = np.zeros((height, width, 4), np.float32)
    pixels[..., 3] = 1.0
    pixels[8:13, 18:23, :3] = 1.0
    image.pixels.foreach_set(pixels[::-1].ravel())  # Blender stores rows bottom-up
    image.file_format = "PNG"
    image.filepath_raw = str(tmp_path / "block.png")
    image.save()
    bpy.data.images.remove(image)
    clip = bpy.data.movieclips.load(str(tmp_path / "block.png"))
    area = bpy.context.window.screen.areas[0]
    previous = area.type
    try:
        area.type = "CLIP_EDITOR"
        area.spaces.active.clip = clip
        region = next(r for r in area.regions if r.type == "WINDOW")
        with bpy.context.temp_override(area=area, region=region, space_data=area.spaces.active, edit_movieclip=clip):
            assert bpy.ops.clip.detect_features(placement="FRAME", margin=0, threshold=1e-4, min_distance=1) == {
                "FINISHED"
            }
        detected = np.array([tuple(track.markers[0].co) for track in clip.tracking.tracks])
    finally:
        area.type = previous
        bpy.data.movieclips.remove(clip)
    assert len(detected) >= 4
    assert np.allclose(detected.mean(axis=0), opencv_pixels_to_clip(np.array([20.0, 10.0]), width, height), atol=1e-6)
