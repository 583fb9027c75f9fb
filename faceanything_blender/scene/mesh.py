"""The face mesh and its two kinds of animation: a PC2 point cache or one shape key per frame."""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import bpy
import numpy as np

from .animation import Curve, animate
from .axes import opencv_points_to_world
from .timing import CaptureTiming, mesh_cache_mapping, shape_key_switches

PC2_HEADER = struct.Struct("<12siiffi")  # signature, version, vertices, start frame, sample rate, samples
PC2_SIGNATURE = b"POINTCACHE2\0"
# Frames converted and written at a time: bounded memory for any capture length.
PC2_CHUNK_BYTES = 32 * 1024 * 1024
UV_LAYER = "UVMap"
CACHE_MODIFIER = "Face Anything Cache"


def create_face_mesh(name: str, positions_world: np.ndarray, triangles: np.ndarray, uv: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh with per-vertex UVs (stored per corner, as Blender does) and smooth shading."""
    triangles = np.asarray(triangles, np.int32)
    corners = triangles.ravel()
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(positions_world))
    mesh.vertices.foreach_set("co", np.asarray(positions_world, np.float32).ravel())
    mesh.loops.add(len(corners))
    mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), 3, dtype=np.int32))
    mesh.uv_layers.new(name=UV_LAYER).data.foreach_set("uv", np.asarray(uv, np.float32)[corners].ravel())
    mesh.polygons.foreach_set("use_smooth", np.ones(len(triangles), bool))
    mesh.update()
    return mesh


def write_pc2(path: Path, vertices: np.ndarray, timing: CaptureTiming) -> None:
    """Write (T, V, 3) OpenCV-camera vertices (a memory map is fine) as world-space PC2 samples.

    Streams chunks of frames, so memory stays at one chunk whatever the capture's length, and
    writes through a temporary file and a rename, so a reader never sees half a cache.
    """
    frame_count, vertex_count = vertices.shape[:2]
    chunk = max(1, PC2_CHUNK_BYTES // (vertex_count * 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(PC2_HEADER.pack(PC2_SIGNATURE, 1, vertex_count, timing.first, timing.step, frame_count))
            for start in range(0, frame_count, chunk):
                handle.write(opencv_points_to_world(vertices[start : start + chunk]))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_point_cache(obj: bpy.types.Object, cache_path: str, timing: CaptureTiming) -> bpy.types.Modifier:
    """A Mesh Cache modifier playing ``cache_path`` so the capture's first frame reads sample 0."""
    modifier = obj.modifiers.new(CACHE_MODIFIER, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = cache_path
    modifier.interpolation = "NONE"
    modifier.frame_start, modifier.frame_scale = mesh_cache_mapping(timing)
    return modifier


def add_shape_keys(
    obj: bpy.types.Object, vertices: np.ndarray, timing: CaptureTiming, action: bpy.types.Action
) -> None:
    """One shape key per captured frame, switched on by a constant-interpolation curve."""
    obj.shape_key_add(name="Basis", from_mix=False)
    for t, frame in enumerate(timing.scene_frames):
        key = obj.shape_key_add(name=f"frame_{int(frame):06d}", from_mix=False)
        key.data.foreach_set("co", opencv_points_to_world(vertices[t]).ravel())
    key_blocks = obj.data.shape_keys.key_blocks
    curves = [
        Curve(f'key_blocks["{key_blocks[t + 1].name}"].value', 0, frames, values, "Frames")
        for t, (frames, values) in enumerate(shape_key_switches(timing))
    ]
    animate(obj.data.shape_keys, action, curves, interpolation="CONSTANT")
