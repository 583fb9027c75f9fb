"""Convert a built capture's face between point cache and shape keys, without capturing again.

FBX keeps shape-key animation but not a Mesh Cache modifier; Alembic and USD keep both. The
vertices come from the face's current animation (the PC2 file the modifier reads, or the shape
keys), the frame each sample belongs to from the capture's timing (its reconstruction folder),
so the result plays exactly as a capture made in the other mode. The PC2 file itself is read
and written by numpy-only code (point_cache.py).
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..runtime_paths import runtime_module
from .build import capture_face_timing, point_cache_location
from .mesh import CACHE_MODIFIER, add_point_cache, add_shape_keys, frames_per_chunk
from .point_cache import read_pc2, write_pc2_samples
from .tags import CAPTURE_KEY, MADE_KEY


def face_animation(obj: bpy.types.Object | None) -> str | None:
    """'POINT_CACHE' or 'SHAPE_KEYS' for a capture's face mesh (or a copy of it), else None."""
    if obj is None or obj.type != "MESH" or CAPTURE_KEY not in obj:
        return None
    modifier = obj.modifiers.get(CACHE_MODIFIER)
    if modifier is not None and modifier.type == "MESH_CACHE":
        return "POINT_CACHE"
    if obj.data.shape_keys is not None and len(obj.data.shape_keys.key_blocks) > 1:
        return "SHAPE_KEYS"
    return None


def convert_face(face: bpy.types.Object, animation: str) -> dict:
    """Turn ``face``'s animation into ``animation`` ('POINT_CACHE' or 'SHAPE_KEYS'); returns
    {"animation", "frames", "cache_path" (None for shape keys)}. `InputError` saying what to
    do when the face, its cache or its capture's reconstruction does not fit."""
    errors = runtime_module("errors")
    current = face_animation(face)
    if current is None:
        raise errors.InputError(
            f"{face.name} is not a Face Anything face mesh with a point cache or shape keys",
            "Select the FA_face mesh a capture created.",
        )
    if current == animation:
        raise errors.InputError(
            f"{face.name} is already animated by {animation.replace('_', ' ').lower()}", "Nothing to convert."
        )
    capture_dir, timing = capture_face_timing(face, animation)
    if animation == "SHAPE_KEYS":
        point_cache_to_shape_keys(face, timing)
        return {"animation": animation, "frames": len(timing.scene_frames), "cache_path": None}
    cache_path = shape_keys_to_point_cache(face, capture_dir, timing)
    return {"animation": animation, "frames": len(timing.scene_frames), "cache_path": cache_path}


def point_cache_to_shape_keys(face: bpy.types.Object, timing) -> None:
    modifier = face.modifiers[CACHE_MODIFIER]
    path = Path(bpy.path.abspath(modifier.filepath))
    try:
        samples = read_pc2(path)
    except (OSError, ValueError) as exc:
        raise runtime_module("errors").InputError(
            f"The point cache of {face.name} cannot be read: {exc}",
            "Point the Mesh Cache modifier's file at the capture's .pc2, or capture again.",
        ) from exc
    check_shape(face, samples.shape[:2], timing, f"its point cache {path}")
    add_shape_keys(face, samples.__getitem__, timing, capture_action(face))
    face.modifiers.remove(modifier)


def shape_keys_to_point_cache(face: bpy.types.Object, capture_dir: Path, timing) -> str:
    key = face.data.shape_keys
    frames = list(key.key_blocks)[1:]
    vertex_count = len(face.data.vertices)
    check_shape(face, (len(frames), vertex_count), timing, "its shape keys")
    chunk = frames_per_chunk(vertex_count)

    def chunks():
        for start in range(0, len(frames), chunk):
            block = frames[start : start + chunk]
            samples = np.empty(len(block) * vertex_count * 3, np.float32)
            for i, shape in enumerate(block):
                shape.data.foreach_get("co", samples[i * vertex_count * 3 : (i + 1) * vertex_count * 3])
            yield samples

    cache_file, cache_path = point_cache_location(capture_dir, face.name)
    write_pc2_samples(cache_file, vertex_count, len(frames), chunks(), timing.first, timing.step)
    animation_data = key.animation_data
    if animation_data is not None and animation_data.action is not None and animation_data.action_slot is not None:
        animation_data.action.slots.remove(animation_data.action_slot)
    face.shape_key_clear()
    add_point_cache(face, cache_path, timing)
    return cache_path


def check_shape(face, shape: tuple[int, int], timing, source: str) -> None:
    frame_count, vertex_count = shape
    if frame_count != len(timing.scene_frames) or vertex_count != len(face.data.vertices):
        raise runtime_module("errors").InputError(
            f"{face.name} has {len(face.data.vertices)} vertices and its capture {len(timing.scene_frames)} frames, "
            f"but {source} holds {frame_count} frames of {vertex_count} vertices",
            "Capture again in the animation mode you want.",
        )


def capture_action(face: bpy.types.Object) -> bpy.types.Action:
    """The action the face's capture animates its objects with, else a new one."""
    for collection in bpy.data.collections:
        if collection.get(CAPTURE_KEY) == face[CAPTURE_KEY]:
            for block in collection.get(MADE_KEY, {}).values():
                if isinstance(block, bpy.types.Action):
                    return block
    return bpy.data.actions.new(f"FA_{face.name}")
