"""Operators on a capture already in the scene: convert its face between point cache and shape
keys (scene/convert.py), e.g. before an FBX export, which keeps only shape-key animation."""
from __future__ import annotations

import bpy

from .runtime_paths import runtime_module
from .scene.convert import convert_face, face_animation


class _ConvertFace:
    """Shared by the two directions: acts on the active object, a capture's face mesh."""

    target = ""

    @classmethod
    def poll(cls, context):
        current = face_animation(context.active_object)
        return current is not None and current != cls.target

    def execute(self, context):
        face = context.active_object
        try:
            result = convert_face(face, self.target)
        except runtime_module("errors").UserError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        where = f" ({result['cache_path']})" if result["cache_path"] else ""
        mode = result["animation"].replace("_", " ").lower()
        self.report({"INFO"}, f"{face.name} now plays its {result['frames']} frames from {mode}{where}")
        return {"FINISHED"}


class FACEANYTHING_OT_to_shape_keys(_ConvertFace, bpy.types.Operator):
    """Animate the selected capture face by one shape key per frame instead of its point cache (FBX keeps these)"""

    bl_idname = "faceanything.to_shape_keys"
    bl_label = "Convert to Shape Keys"
    bl_options = {"REGISTER", "UNDO"}
    target = "SHAPE_KEYS"


class FACEANYTHING_OT_to_point_cache(_ConvertFace, bpy.types.Operator):
    """Animate the selected capture face by a point cache (.pc2 file) instead of shape keys (plays any length fast)"""

    bl_idname = "faceanything.to_point_cache"
    bl_label = "Convert to Point Cache"
    bl_options = {"REGISTER", "UNDO"}
    target = "POINT_CACHE"


def draw_conversion_section(layout, context) -> None:
    """The active capture face's animation mode and the button that converts it."""
    current = face_animation(context.active_object)
    if current is None:
        layout.label(text="Select a capture's face mesh to convert its animation", icon="INFO")
        return
    layout.label(text=f"{context.active_object.name}: {current.replace('_', ' ').lower()}", icon="MESH_DATA")
    if current == "POINT_CACHE":
        layout.operator(FACEANYTHING_OT_to_shape_keys.bl_idname, icon="SHAPEKEY_DATA")
    else:
        layout.operator(FACEANYTHING_OT_to_point_cache.bl_idname, icon="FILE_CACHE")


classes = (FACEANYTHING_OT_to_shape_keys, FACEANYTHING_OT_to_point_cache)
