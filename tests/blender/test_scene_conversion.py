"""Converting a built capture's face between point cache and shape keys, and what Blender's
exporters keep: FBX (shape keys), Alembic and USD re-import with the captured vertices."""
from __future__ import annotations

import os

from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from faceanything_blender.scene import build_capture
from faceanything_blender.scene.convert import convert_face, face_animation
from faceanything_blender.scene.point_cache import read_pc2
from faceanything_blender.runtime_paths import runtime_module
from faceanything_blender.scene.timing import capture_timing
from tests.blender.scene_fixtures import (
    evaluated_world_vertices,
    expected_world,
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
)

TIMING = dict(frame_count=7, first_source_index=3, step=2)  # footage frames 3, 5, ..., 15


def expected_at(reconstruction, scene_frame: int) -> np.ndarray:
    """The captured vertices a scene frame shows: the last captured frame at or before it."""
    scene_frames = capture_timing(reconstruction.frame_numbers, 25.0).scene_frames
    t = int(np.clip(np.searchsorted(scene_frames, scene_frame, side="right") - 1, 0, None))
    return expected_world(reconstruction.vertices[t])


def assert_plays_the_capture(scene, face, reconstruction) -> None:
    for frame in range(0, 19):  # before, during (held between captured frames) and after
        scene.frame_set(frame)
        assert np.abs(evaluated_world_vertices(face) - expected_at(reconstruction, frame)).max() < 1e-6, frame


@pytest.mark.parametrize("built_as", ["POINT_CACHE", "SHAPE_KEYS"])
def test_conversion_there_and_back_plays_the_same_vertices(fresh_scene, tmp_path, built_as):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", **TIMING)
    face = bpy.data.objects[build_capture(fresh_scene, capture_dir, footage="", animation=built_as)["mesh"]]
    other = "SHAPE_KEYS" if built_as == "POINT_CACHE" else "POINT_CACHE"
    converted = convert_face(face, other)
    assert face_animation(face) == other and converted["frames"] == 7
    if other == "SHAPE_KEYS":
        assert not face.modifiers and len(face.data.shape_keys.key_blocks) == 8
    else:
        assert face.data.shape_keys is None and [m.type for m in face.modifiers] == ["MESH_CACHE"]
        written = read_pc2(converted["cache_path"])
        assert np.array_equal(written, expected_world(reconstruction.vertices).astype(np.float32))
    assert_plays_the_capture(fresh_scene, face, reconstruction)
    convert_face(face, built_as)
    assert face_animation(face) == built_as
    assert_plays_the_capture(fresh_scene, face, reconstruction)


def test_conversion_refuses_what_it_cannot_convert(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=4)
    face = bpy.data.objects[build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")["mesh"]]
    with pytest.raises(runtime_module("errors").InputError, match="already animated by point cache"):
        convert_face(face, "POINT_CACHE")
    face.modifiers[0].filepath = str(tmp_path / "gone.pc2")
    with pytest.raises(runtime_module("errors").InputError, match="point cache of FA_face cannot be read") as missing:
        convert_face(face, "SHAPE_KEYS")
    assert "gone.pc2" in str(missing.value) and missing.value.hint
    camera = bpy.data.objects["FA_camera"]
    with pytest.raises(runtime_module("errors").InputError, match="FA_camera is not a Face Anything face mesh"):
        convert_face(camera, "SHAPE_KEYS")


def test_operators_convert_the_active_face(scene, tmp_path, addon):
    from conftest import RecordingLayout

    capture_dir, reconstruction = make_capture(tmp_path / "capture", **TIMING)
    face = bpy.data.objects[build_capture(scene, capture_dir, footage="", animation="POINT_CACHE")["mesh"]]
    bpy.context.view_layer.objects.active = face
    calls = []
    addon.ui.FACEANYTHING_PT_face_animation.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    assert [args["operator"] for name, args in calls if name == "operator"] == ["faceanything.to_shape_keys"]
    with bpy.context.temp_override(active_object=face):
        assert not bpy.ops.faceanything.to_point_cache.poll()
        assert bpy.ops.faceanything.to_shape_keys() == {"FINISHED"}
        assert face_animation(face) == "SHAPE_KEYS"
        assert bpy.ops.faceanything.to_point_cache() == {"FINISHED"}
    assert face_animation(face) == "POINT_CACHE"
    assert_plays_the_capture(scene, face, reconstruction)
    with bpy.context.temp_override(active_object=bpy.data.objects["FA_head"]):
        assert not bpy.ops.faceanything.to_shape_keys.poll()


def export_and_import(scene, path, file_format: str) -> list:
    """Export the scene in ``file_format``, import it into a new scene; returns the meshes."""
    start, end = scene.frame_start, scene.frame_end
    if file_format == "fbx":
        bpy.ops.export_scene.fbx(filepath=str(path), bake_anim=True, bake_anim_use_all_bones=False)
    elif file_format == "abc":
        bpy.ops.wm.alembic_export(filepath=str(path), start=start, end=end, as_background_job=False)
    else:
        bpy.ops.wm.usd_export(filepath=str(path), export_animation=True)
    imported = bpy.data.scenes.new(f"{file_format} import")
    imported.render.fps, imported.render.fps_base = scene.render.fps, scene.render.fps_base
    imported.frame_start, imported.frame_end = start, end
    bpy.context.window.scene = imported
    if file_format == "fbx":
        # FBX stores time from the exported range's start; the importer puts that at anim_offset.
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=start)
    elif file_format == "abc":
        bpy.ops.wm.alembic_import(filepath=str(path), as_background_job=False)
    else:
        bpy.ops.wm.usd_import(filepath=str(path))
    return imported


@pytest.mark.parametrize(
    "file_format, animation",
    [("fbx", "SHAPE_KEYS"), ("abc", "POINT_CACHE"), ("abc", "SHAPE_KEYS"), ("usd", "POINT_CACHE"),
     ("usd", "SHAPE_KEYS")],
)
def test_exports_reimport_with_the_captured_vertices(fresh_scene, tmp_path, file_format, animation):  # noqa: F811
    """A capture built with a point cache, converted where FBX needs shape keys, exported and
    imported back: the face has the captured vertices at a later frame."""
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=6, first_source_index=3, fps=29.97)
    face = bpy.data.objects[build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")["mesh"]]
    if animation == "SHAPE_KEYS":
        convert_face(face, "SHAPE_KEYS")
    imported = export_and_import(fresh_scene, tmp_path / f"capture.{file_format}", file_format)
    try:
        [mesh] = [obj for obj in imported.objects if obj.type == "MESH"]
        scene_frames = capture_timing(reconstruction.frame_numbers, 29.97).scene_frames
        for t in (1, 4):
            imported.frame_set(int(scene_frames[t]))
            error = np.abs(evaluated_world_vertices(mesh) - expected_world(reconstruction.vertices[t])).max()
            # FBX goes through centimetres and float32 shape-key offsets: 0.05 mm; the others 1 micron.
            assert error < (5e-5 if file_format == "fbx" else 1e-6), (t, error)
    finally:
        bpy.context.window.scene = fresh_scene
        bpy.data.batch_remove(list(imported.objects))
        bpy.data.scenes.remove(imported)


def test_point_caches_follow_the_umask(tmp_path):
    from faceanything_blender.scene.point_cache import write_pc2_samples

    previous = os.umask(0o002)
    try:
        write_pc2_samples(tmp_path / "face.pc2", 2, 1, [np.zeros((1, 2, 3))], 1.0, 1.0)
    finally:
        os.umask(previous)
    assert (tmp_path / "face.pc2").stat().st_mode & 0o777 == 0o664
    assert read_pc2(tmp_path / "face.pc2").shape == (1, 2, 3)
