"""The face mesh and its two kinds of animation: a PC2 point cache or one shape key per frame."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np

from .animation import Curve, animate
from .axes import opencv_points_to_world
from .point_cache import write_pc2_samples
from .timing import CaptureTiming, mesh_cache_mapping, shape_key_switches

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

    Streams chunks of frames, so memory stays at one chunk whatever the capture's length.
    """
    frame_count, vertex_count = vertices.shape[:2]
    chunk = frames_per_chunk(vertex_count)
    chunks = (opencv_points_to_world(vertices[start : start + chunk]) for start in range(0, frame_count, chunk))
    write_pc2_samples(path, vertex_count, frame_count, chunks, timing.first, timing.step)


def frames_per_chunk(vertex_count: int) -> int:
    """Frames of a PC2 chunk: PC2_CHUNK_BYTES of samples."""
    return max(1, PC2_CHUNK_BYTES // (vertex_count * 12))


def add_point_cache(obj: bpy.types.Object, cache_path: str, timing: CaptureTiming) -> bpy.types.Modifier:
    """A Mesh Cache modifier playing ``cache_path`` so the capture's first frame reads sample 0."""
    modifier = obj.modifiers.new(CACHE_MODIFIER, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = cache_path
    modifier.interpolation = "NONE"
    modifier.frame_start, modifier.frame_scale = mesh_cache_mapping(timing)
    return modifier


def add_shape_keys(
    obj: bpy.types.Object, world_frame: Callable[[int], np.ndarray], timing: CaptureTiming, action: bpy.types.Action
) -> None:
    """One shape key per captured frame, switched on by a constant-interpolation curve;
    ``world_frame(t)`` gives capture index t's (V, 3) world-space vertices."""
    obj.shape_key_add(name="Basis", from_mix=False)
    for t, frame in enumerate(timing.scene_frames):
        key = obj.shape_key_add(name=f"frame_{int(frame):06d}", from_mix=False)
        key.data.foreach_set("co", np.asarray(world_frame(t), np.float32).ravel())
    key_blocks = obj.data.shape_keys.key_blocks
    curves = [
        Curve(f'key_blocks["{key_blocks[t + 1].name}"].value', 0, frames, values, "Frames")
        for t, (frames, values) in enumerate(shape_key_switches(timing))
    ]
    animate(obj.data.shape_keys, action, curves, interpolation="CONSTANT")
