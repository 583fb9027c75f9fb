"""Blender's own exporters take a capture: Alembic carries the point-cached animation."""
from __future__ import annotations

import bpy
import numpy as np

from faceanything_blender.scene import build_capture
from tests.blender.scene_fixtures import (
    evaluated_world_vertices,
    expected_world,
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
)


def test_alembic_round_trip_keeps_the_point_cached_motion(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=6, first_source_index=3, fps=29.97)
    build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    path = tmp_path / "capture.abc"
    bpy.ops.wm.alembic_export(
        filepath=str(path), start=fresh_scene.frame_start, end=fresh_scene.frame_end, as_background_job=False
    )
    imported = bpy.data.scenes.new("Alembic import")
    imported.render.fps, imported.render.fps_base = fresh_scene.render.fps, fresh_scene.render.fps_base
    window = bpy.context.window
    window.scene = imported
    try:
        bpy.ops.wm.alembic_import(filepath=str(path), as_background_job=False)
        [face] = [obj for obj in imported.objects if obj.type == "MESH"]
        assert [m.type for m in face.modifiers] == ["MESH_SEQUENCE_CACHE"]
        for t in (1, 4):
            imported.frame_set(int(reconstruction.frame_numbers[t]))
            assert np.abs(evaluated_world_vertices(face) - expected_world(reconstruction.vertices[t])).max() < 1e-6
    finally:
        window.scene = fresh_scene
        bpy.data.batch_remove(list(imported.objects))
        bpy.data.scenes.remove(imported)
