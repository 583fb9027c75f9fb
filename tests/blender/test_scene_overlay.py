"""Seen through the created camera, the empties and the mesh land exactly on the footage.

One projection check catches every axis, unit, principal-point shift, sensor fit, pixel aspect
and off-by-one-frame mistake: the reconstruction's 2D points are exact pinhole projections, and
Blender's camera must put the empties on them. The issue asks for <= 1 px; the builder is exact,
so the tests hold it to 0.01 px, tight enough to catch a half-pixel convention slip too.
"""
from __future__ import annotations

import bpy
import numpy as np
import pytest

from faceanything_blender.scene import ANIMATION_MODES, build_capture
from tests.blender.scene_fixtures import (
    camera_pixels,
    evaluated_world_vertices,
    expected_world,
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
    pinhole_pixels,
)

TOLERANCE_PX = 0.01
FRAMINGS = {
    "landscape 360x288": dict(frame_size=(360, 288)),
    "portrait 288x360": dict(frame_size=(288, 360), principal=(131.25, 190.5)),
    "wide pixels, focal varying per frame": dict(frame_size=(360, 288), focal=(440.0, 400.0), focal_wobble=0.03),
    "tall pixels, portrait": dict(frame_size=(288, 360), focal=(380.0, 415.0)),
}


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("animation", ANIMATION_MODES)
def test_empties_and_mesh_project_onto_the_footage(fresh_scene, tmp_path, framing, animation):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=9, **FRAMINGS[framing])
    built = build_capture(fresh_scene, capture_dir, footage="", animation=animation)


    empties = [bpy.data.objects[built["points"][name]] for name in reconstruction.point_names]
    face = bpy.data.objects[built["mesh"]]
    for t in range(reconstruction.frame_count):
        fresh_scene.frame_set(int(reconstruction.frame_numbers[t]))
        seen = camera_pixels(fresh_scene, [empty.matrix_world.translation for empty in empties])
        assert np.abs(seen - reconstruction.point_pixels[t]).max() <= TOLERANCE_PX, f"points, frame {t}"
        if t in (0, reconstruction.frame_count // 2, reconstruction.frame_count - 1):
            vertices = evaluated_world_vertices(face)
            expected = pinhole_pixels(reconstruction.intrinsics[t], reconstruction.vertices[t])
            assert np.abs(camera_pixels(fresh_scene, vertices) - expected).max() <= TOLERANCE_PX, f"mesh, frame {t}"


def test_every_step_th_frame_lands_on_its_footage_frame_and_holds_until_the_next(fresh_scene, tmp_path):  # noqa: F811
    """Footage frames 5, 8, 11, ... captured: scene frame 6 is source frame 5, and the frames in
    between show the previous captured frame in both animation modes."""


    timing = dict(frame_count=6, first_source_index=5, step=3)
    capture_dir, reconstruction = make_capture(tmp_path / "cached", **timing)
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    cached = bpy.data.objects[built["mesh"]]
    twin_dir, _ = make_capture(tmp_path / "keyed", **timing)
    keyed = bpy.data.objects[build_capture(fresh_scene, twin_dir, footage="", animation="SHAPE_KEYS")["mesh"]]
    assert (fresh_scene.frame_start, fresh_scene.frame_end) == (6, 6 + 3 * 5)
    empty = bpy.data.objects[built["points"]["nose_tip"]]
    nose = reconstruction.point_names.index("nose_tip")
    for frame in range(fresh_scene.frame_start, fresh_scene.frame_end + 1):
        fresh_scene.frame_set(frame)
        t = (frame - 6) // 3
        expected = expected_world(reconstruction.vertices[t])
        assert np.abs(evaluated_world_vertices(cached) - expected).max() < 1e-6, f"point cache, frame {frame}"
        assert np.abs(evaluated_world_vertices(keyed) - expected).max() < 1e-6, f"shape keys, frame {frame}"
        if (frame - 6) % 3 == 0:
            seen = camera_pixels(fresh_scene, [empty.matrix_world.translation])[0]
            assert np.abs(seen - reconstruction.point_pixels[t, nose]).max() <= TOLERANCE_PX
