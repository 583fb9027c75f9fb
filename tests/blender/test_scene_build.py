"""What one capture creates: objects, scene settings, mesh, point cache, shape keys, curves,
footage, and what a re-run replaces."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras import anim_utils

from faceanything_blender.scene import build, build_capture, mesh
from faceanything_blender.runtime_paths import runtime_module
from faceanything_blender.scene.tags import CAPTURE_KEY, POINT_KEY
from faceanything_blender.scene.timing import capture_timing
from tests.blender.scene_fixtures import (
    evaluated_world_vertices,
    expected_world,
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
    write_footage,
)

REPO = Path(__file__).resolve().parents[2]


def channelbag(obj):
    return anim_utils.action_get_channelbag_for_slot(obj.animation_data.action, obj.animation_data.action_slot)


def datablock_counts() -> list[int]:
    return [len(blocks) for blocks in (bpy.data.objects, bpy.data.meshes, bpy.data.shape_keys, bpy.data.actions)]


def test_capture_objects_are_named_parented_and_tagged(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture")
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE", name="take_1")
    objects = bpy.data.objects
    collection = bpy.data.collections[built["collection"]]
    assert collection.name == "take_1" and collection in set(fresh_scene.collection.children)
    root, camera, face, head = (objects[built[key]] for key in ("root", "camera", "mesh", "head"))
    assert (root.name, camera.name, face.name, head.name) == ("FA_take_1", "FA_camera", "FA_face", "FA_head")
    assert root.parent is None and camera.parent == root and face.parent == root and head.parent == root
    assert np.allclose(np.array(root.matrix_world), np.eye(4))
    assert built["points"] == {name: f"FA_{name}" for name in reconstruction.point_names}
    for name, object_name in built["points"].items():
        empty = objects[object_name]
        assert empty.parent == head and empty[POINT_KEY] == name
    made = {root.name, camera.name, face.name, head.name, *built["points"].values()}
    assert {obj.name for obj in collection.objects} == made
    assert all(obj[CAPTURE_KEY] == str(capture_dir.resolve()) for obj in collection.objects)
    assert fresh_scene.camera == camera


def test_scene_takes_the_footage_rate_range_and_resolution(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(
        tmp_path / "capture", frame_size=(288, 360), fps=29.97, first_source_index=10, frame_count=7,
        focal=(400.0, 420.0),
    )
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    render = fresh_scene.render
    assert (render.fps, render.fps_base) == (30, pytest.approx(30 / 29.97))
    assert built["fps"] == pytest.approx(29.97)
    assert (fresh_scene.frame_start, fresh_scene.frame_end) == (11, 17) == (built["frame_start"], built["frame_end"])
    assert (render.resolution_x, render.resolution_y, render.resolution_percentage) == (288, 360, 100)
    # Pixels 420/400 times taller than wide in the camera's terms: Blender's pixel aspect y/x = fx/fy.
    assert render.pixel_aspect_y / render.pixel_aspect_x == pytest.approx(400 / 420)


def test_point_cache_and_shape_keys_give_the_same_vertices_on_every_frame(fresh_scene, tmp_path):  # noqa: F811
    cache_dir, reconstruction = make_capture(tmp_path / "cached", frame_count=10)
    keys_dir, _ = make_capture(tmp_path / "keyed", frame_count=10)
    cached = bpy.data.objects[build_capture(fresh_scene, cache_dir, footage="", animation="POINT_CACHE")["mesh"]]
    keyed = bpy.data.objects[build_capture(fresh_scene, keys_dir, footage="", animation="SHAPE_KEYS")["mesh"]]
    assert [m.type for m in cached.modifiers] == ["MESH_CACHE"] and cached.data.shape_keys is None
    assert not keyed.modifiers and len(keyed.data.shape_keys.key_blocks) == 1 + 10
    for frame in range(0, 13):  # before, during and after the capture
        fresh_scene.frame_set(frame)
        t = min(max(frame - 1, 0), 9)
        expected = expected_world(reconstruction.vertices[t])
        from_cache, from_keys = evaluated_world_vertices(cached), evaluated_world_vertices(keyed)
        assert np.abs(from_cache - expected).max() < 1e-6, f"frame {frame}"
        assert np.abs(from_keys - from_cache).max() < 1e-6, f"frame {frame}"


def test_shape_keys_switch_with_constant_curves_one_per_frame(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=6)
    face = bpy.data.objects[build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")["mesh"]]
    key = face.data.shape_keys
    curves = channelbag(key).fcurves
    assert len(curves) == 6
    assert {point.interpolation for curve in curves for point in curve.keyframe_points} == {"CONSTANT"}
    for frame in range(1, 7):
        fresh_scene.frame_set(frame)
        values = [block.value for block in key.key_blocks[1:]]
        assert values == [1.0 if k == frame - 1 else 0.0 for k in range(6)], f"frame {frame}"


def test_pc2_file_holds_world_positions_from_sample_zero(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=5, first_source_index=4, step=2)
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE", name="take")
    path = Path(built["cache_path"])
    assert path == capture_dir.resolve() / "take.pc2"  # the .blend is unsaved: the capture folder
    data = path.read_bytes()
    signature, version, vertex_count, start, rate, samples = struct.unpack("<12siiffi", data[:32])
    assert (signature, version, vertex_count, start, rate, samples) == (b"POINTCACHE2\0", 1, 144, 5.0, 2.0, 5)
    stored = np.frombuffer(data[32:], np.float32).reshape(5, 144, 3)
    assert np.array_equal(stored, expected_world(reconstruction.vertices).astype(np.float32))
    modifier = bpy.data.objects[built["mesh"]].modifiers[0]
    assert (modifier.cache_format, modifier.filepath, modifier.interpolation) == ("PC2", str(path), "NONE")


def test_pc2_written_in_small_chunks_is_the_same_file(fresh_scene, tmp_path, monkeypatch):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=7)

    def cache_bytes():
        built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
        return Path(built["cache_path"]).read_bytes()

    whole = cache_bytes()
    monkeypatch.setattr(mesh, "PC2_CHUNK_BYTES", 144 * 12 * 3)  # three frames per chunk, the last one short
    chunked = cache_bytes()
    assert chunked == whole and len(whole) == 32 + 7 * 144 * 12


def test_pc2_is_streamed_in_bounded_memory(tmp_path, monkeypatch):
    """Writing the cache holds one chunk of converted frames, never the whole capture."""
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=60, grid=30)
    formats = runtime_module("reconstruction_format")
    reconstruction = formats.load_reconstruction(formats.reconstruction_dir(capture_dir), memory_map=True)
    frame_bytes = 30 * 30 * 12
    monkeypatch.setattr(mesh, "PC2_CHUNK_BYTES", 2 * frame_bytes)
    timing = capture_timing(reconstruction.frame_numbers, 25.0)
    tracemalloc.start()
    try:
        mesh.write_pc2(tmp_path / "cache.pc2", reconstruction.vertices, timing)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "cache.pc2").stat().st_size == 32 + 60 * frame_bytes
    assert peak < 10 * frame_bytes  # the capture is 60 frames


def test_mesh_has_uvs_smooth_shading_and_faces_the_camera(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture")
    face = bpy.data.objects[build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")["mesh"]]
    data = face.data
    assert len(data.polygons) == len(reconstruction.triangles)
    assert all(polygon.use_smooth for polygon in data.polygons)
    corners = np.empty(len(data.loops) * 2, np.float32)
    data.uv_layers.active.data.foreach_get("uv", corners)
    assert np.allclose(corners.reshape(-1, 2), reconstruction.uv[reconstruction.triangles.ravel()])
    fresh_scene.frame_set(1)
    evaluated = face.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    normals = np.array([p.normal for p in evaluated.polygons])
    centres = np.array([p.center for p in evaluated.polygons])
    # Outward normals (counter-clockwise triangles) point back toward the camera at the origin.
    assert np.all(np.sum(normals * -centres, axis=1) > 0)


def test_motion_is_written_as_whole_linear_curves(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=8, first_source_index=2)
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    head = bpy.data.objects[built["head"]]
    curves = channelbag(head).fcurves
    assert sorted((c.data_path, c.array_index) for c in curves) == sorted(
        (path, i) for path in ("location", "rotation_euler", "scale") for i in range(3)
    )
    for curve in curves:
        frames = [point.co[0] for point in curve.keyframe_points]
        assert frames == list(range(3, 11))
        assert {point.interpolation for point in curve.keyframe_points} == {"LINEAR"}
    empty = bpy.data.objects[built["points"]["chin"]]
    assert [c.data_path for c in channelbag(empty).fcurves] == ["location"] * 3 + ['["visible"]']
    # One action carries the whole capture, a slot per animated object.
    assert head.animation_data.action == empty.animation_data.action
    assert head.animation_data.action_slot != empty.animation_data.action_slot


def test_point_empties_hold_the_offset_from_rest(fresh_scene, tmp_path):  # noqa: F811
    """Location = the point's offset from its rest place, in head axes; zero motion, zero offset."""
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=4)
    built = build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    chin = reconstruction.point_names.index("chin")
    empty = bpy.data.objects[built["points"]["chin"]]
    for t in range(4):
        fresh_scene.frame_set(t + 1)
        pose = reconstruction.head_pose[t]
        canonical = np.linalg.solve(pose[:3, :3], reconstruction.point_positions[t, chin] - pose[:3, 3])
        offset = canonical - reconstruction.point_canonical[chin]
        # canonical (x left, y up, z out of the face) -> head axes (x left, y back, z up)
        assert np.allclose(empty.location, (offset[0], -offset[2], offset[1]), atol=1e-6)


def test_focal_length_varying_per_frame_animates_the_lens(fresh_scene, tmp_path):  # noqa: F811
    steady_dir, _ = make_capture(tmp_path / "steady")
    steady = bpy.data.objects[build_capture(fresh_scene, steady_dir, footage="", animation="POINT_CACHE")["camera"]]
    assert steady.data.animation_data is None
    varying_dir, reconstruction = make_capture(tmp_path / "varying", focal_wobble=0.05)
    varying = bpy.data.objects[build_capture(fresh_scene, varying_dir, footage="", animation="POINT_CACHE")["camera"]]
    lens = channelbag(varying.data).fcurves.find("lens")
    fx = reconstruction.intrinsics[:, 0, 0]
    assert np.allclose([p.co[1] for p in lens.keyframe_points], fx * 36.0 / 360, rtol=1e-6)


def test_rerun_replaces_its_own_objects_and_nothing_else(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture")
    other_dir, _ = make_capture(tmp_path / "other")
    built = build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")
    other = build_capture(fresh_scene, other_dir, footage="", animation="POINT_CACHE")
    collection = bpy.data.collections[built["collection"]]
    user_object = bpy.data.objects.new("user's empty", None)
    collection.objects.link(user_object)
    first_objects = set(collection.objects) - {user_object}
    counts = datablock_counts()

    again = build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")
    assert again == built  # the same names: nothing left behind to take them
    assert again["collection"] == collection.name and user_object.name in collection.objects
    assert datablock_counts() == counts
    assert not first_objects & set(collection.objects)  # every object was made anew
    other_collection = bpy.data.collections[other["collection"]]
    assert {obj.name for obj in other_collection.objects} >= {other["root"], other["mesh"], other["head"]}


def test_footage_becomes_the_camera_background_from_scene_frame_1(fresh_scene, tmp_path):  # noqa: F811
    first = write_footage(tmp_path / "footage", 12, (360, 288))
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=12)
    built = build_capture(fresh_scene, capture_dir, footage=str(first), animation="POINT_CACHE")
    clip = bpy.data.movieclips[built["clip"]]
    assert tuple(clip.size) == (360, 288) and clip.frame_start == 1 and fresh_scene.active_clip == clip
    camera = bpy.data.objects[built["camera"]].data
    assert camera.show_background_images
    assert [(b.source, b.clip) for b in camera.background_images] == [("MOVIE_CLIP", clip)]
    assert built["warnings"] == []
    # A folder of images is footage too: its first image is loaded.
    from_folder = build_capture(fresh_scene, capture_dir, footage=str(tmp_path / "footage"), animation="POINT_CACHE")
    assert bpy.data.movieclips[from_folder["clip"]].filepath == clip.filepath


def test_missing_or_mismatched_footage_gives_warnings_not_failures(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, _ = make_capture(tmp_path / "capture", frame_size=(288, 360))
    missing = build_capture(fresh_scene, capture_dir, footage=str(tmp_path / "gone.mp4"), animation="POINT_CACHE")
    assert missing["clip"] is None and "gone.mp4" in missing["warnings"][0]
    landscape = write_footage(tmp_path / "footage", 2, (360, 288))
    rotated = build_capture(fresh_scene, capture_dir, footage=str(landscape), animation="POINT_CACHE")
    assert rotated["clip"] and "360x288" in rotated["warnings"][0] and "288x360" in rotated["warnings"][0]


def test_long_shape_key_captures_warn(fresh_scene, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(build, "SHAPE_KEY_WARN_FRAMES", 5)
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=6)
    assert "Point Cache" in build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")["warnings"][-1]
    assert not build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")["warnings"][1:]


def test_bad_captures_are_refused_with_what_to_do(fresh_scene, tmp_path):  # noqa: F811
    input_error = runtime_module("errors").InputError
    with pytest.raises(input_error, match="no header.json") as missing:
        build_capture(fresh_scene, tmp_path / "empty", footage="", animation="POINT_CACHE")
    assert str(tmp_path / "empty") in str(missing.value) and missing.value.hint
    capture_dir, _ = make_capture(tmp_path / "capture")
    with pytest.raises(input_error, match="Unknown animation mode 'ALEMBIC'"):
        build_capture(fresh_scene, capture_dir, footage="", animation="ALEMBIC")
    frames = capture_dir / "reconstruction" / "frames.npz"
    arrays = dict(np.load(frames))
    arrays["frame_numbers"] = np.array([1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    np.savez(frames, **arrays)
    with pytest.raises(input_error, match="not evenly spaced"):
        build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")


def test_cache_beside_a_saved_blend_plays_after_reopening(tmp_path):
    """The CLI saves the .blend before building: the cache goes beside it under a relative
    path, and the reopened file still plays it. In a subprocess, so this session stays unsaved."""
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=5)
    blend = tmp_path / "project" / "shot.blend"
    blend.parent.mkdir()
    script = textwrap.dedent(
        f"""
        import json, sys, bpy
        from faceanything_blender.scene import build_capture
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        built = build_capture(bpy.context.scene, {str(capture_dir)!r}, footage="", animation="POINT_CACHE")
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        face = bpy.data.objects[built["mesh"]]
        bpy.context.scene.frame_set(4)
        evaluated = face.evaluated_get(bpy.context.evaluated_depsgraph_get())
        print(json.dumps({{"path": face.modifiers[0].filepath, "built": built["cache_path"],
                           "z": [v.co.z for v in evaluated.data.vertices]}}))
        """
    )
    environment = dict(os.environ, PYTHONPATH=str(REPO), BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["path"] == result["built"] == "//shot_faceanything/capture.pc2"
    assert (tmp_path / "project" / "shot_faceanything" / "capture.pc2").is_file()
    assert np.allclose(result["z"], expected_world(reconstruction.vertices[3])[:, 2], atol=1e-6)
