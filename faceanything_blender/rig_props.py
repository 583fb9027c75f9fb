"""One row of the rig binding table: which bone follows which capture empty, and how.

The table lives in ``Scene.faceanything.rig_bindings``; `rig.py` turns it into constraints. The
target is an object *name* rather than a pointer so that bindings survive re-running a capture,
which replaces its empties by new ones with the same names.
"""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

from .scene.tags import POINT_KEY

BINDING_MODES = [
    (
        "TRANSFORM",
        "Offset",
        "The bone moves by the point's offset from its rest position on the face, times Gain "
        "(a Transform constraint; captured motion often needs amplification)",
    ),
    (
        "COPY_LOCATION",
        "Copy Offset",
        "The bone moves by the point's offset from its rest position on the face (Copy Location, no gain)",
    ),
    (
        "DAMPED_TRACK",
        "Aim",
        "The bone aims at the empty (Damped Track); for a rig placed over the captured head",
    ),
]


def point_empty_names(_binding, context, edit_text: str) -> list[str]:
    """Search list for `target`: the capture empties in the scene."""
    needle = edit_text.lower()
    return sorted(
        obj.name for obj in context.scene.objects if POINT_KEY in obj and needle in obj.name.lower()
    )


class FACEANYTHING_PG_rig_binding(bpy.types.PropertyGroup):
    bone: StringProperty(name="Bone", description="Pose bone of the armature that follows the capture")
    target: StringProperty(
        name="Empty",
        description="Capture empty the bone follows (e.g. FA_mouth_corner_L)",
        search=point_empty_names,
    )
    mode: EnumProperty(name="Mode", items=BINDING_MODES, default="TRANSFORM")
    influence: FloatProperty(name="Influence", min=0.0, max=1.0, default=1.0, subtype="FACTOR")
    gain: FloatProperty(
        name="Gain",
        default=1.0,
        soft_min=0.0,
        soft_max=10.0,
        description="Multiplies the captured offset (Offset mode)",
    )


classes = (FACEANYTHING_PG_rig_binding,)
