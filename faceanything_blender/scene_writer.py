"""A finished capture becomes Blender objects: called on the main thread when the job ends."""
from __future__ import annotations

import traceback
from pathlib import Path

import bpy

from .runtime_paths import UserError


def build_scene(scene, capture_dir: Path, footage: str, animation: str) -> dict:
    """Build the capture's objects in `scene`; what was made, by kind. Any failure comes out as a
    `UserError` saying that the capture is kept and how to build again."""
    try:
        from .scene import build_from_capture

        context = bpy.context
        view_layer = context.view_layer if context.scene == scene and context.view_layer else scene.view_layers[0]
        with context.temp_override(scene=scene, view_layer=view_layer):
            return build_from_capture(bpy.context, capture_dir, footage=footage, animation=animation) or {}
    except Exception as exc:  # noqa: BLE001 - a failed build must reach the panel, not vanish in a timer
        if not hasattr(exc, "hint"):
            traceback.print_exc()  # not a user error: the console gets the details
        raise UserError(
            f"Building the Blender scene failed: {getattr(exc, 'message', exc)}",
            f"{getattr(exc, 'hint', '')} The capture is kept in {capture_dir}; "
            "press Capture to build again without capturing again.".strip(),
        ) from exc


def created_objects(built) -> list[str]:
    """Names of the objects the builder made, found among the values of its result."""
    if isinstance(built, str):
        return [built] if built in bpy.data.objects else []
    if isinstance(built, dict):
        built = list(built.values())
    if isinstance(built, (list, tuple)):
        return [name for value in built for name in created_objects(value)]
    return []


def summarize_created(names: list[str], shown: int = 5) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"
