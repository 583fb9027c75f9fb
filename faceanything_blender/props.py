"""The add-on's settings on each scene (``Scene.faceanything``): footage, options and job status.

The capture and reconstruction options are not written here: one property per option of the
runtime's `option_schema.py` that belongs on the panel, with its name, choices, default and help,
is made from the schema (`option_property`), so the panel, the request and the runtime agree.

The status fields are written by the capture timer on the main thread, so the panel only reads
properties; they are not animatable and carry nothing the next capture needs, except
``capture_dir`` (the folder a cancelled or failed capture resumes from).
"""
from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .rig_props import FACEANYTHING_PG_rig_binding
from .runtime_paths import runtime_module

schema = runtime_module("option_schema")

FOOTAGE_SOURCES = [
    ("FILE", "Video File", "A video file on disk"),
    ("FOLDER", "Image Folder", "A folder of numbered images"),
    ("CLIP", "Movie Clip", "A movie clip already loaded in this file"),
]
ANIMATION_MODES = [
    ("POINT_CACHE", "Point Cache", "Vertex positions in a .pc2 file next to the .blend (small file, fast)"),
    ("SHAPE_KEYS", "Shape Keys", "One shape key per frame inside the .blend (self-contained, larger)"),
]
STATUSES = [
    ("IDLE", "Idle", ""),
    ("RUNNING", "Running", ""),
    ("DONE", "Done", ""),
    ("CANCELLED", "Cancelled", ""),
    ("ERROR", "Error", ""),
]
NOT_ANIMATABLE: set = set()


def _is_armature(_settings, obj) -> bool:
    return obj.type == "ARMATURE"


class FACEANYTHING_PG_settings(bpy.types.PropertyGroup):
    # Footage
    footage_source: EnumProperty(name="Footage", items=FOOTAGE_SOURCES, default="FILE")
    footage_file: StringProperty(name="Video", subtype="FILE_PATH", description="Video file of a face")
    footage_folder: StringProperty(name="Images", subtype="DIR_PATH", description="Folder of numbered images")
    footage_clip: PointerProperty(name="Clip", type=bpy.types.MovieClip, description="Movie clip in this file")
    # The capture and reconstruction options are added from the schema below the class.
    animation: EnumProperty(name="Animation", items=ANIMATION_MODES, default="POINT_CACHE")
    # Rig (driven by rig_props; edited by the rig panel)
    rig_armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    rig_bindings: CollectionProperty(type=FACEANYTHING_PG_rig_binding)
    # Job status (written by the capture timer)
    status: EnumProperty(name="Status", items=STATUSES, default="IDLE", options=NOT_ANIMATABLE)
    stage: StringProperty(options=NOT_ANIMATABLE)
    frames_done: IntProperty(options=NOT_ANIMATABLE)
    frames_total: IntProperty(options=NOT_ANIMATABLE)
    frames_per_second: FloatProperty(options=NOT_ANIMATABLE)
    seconds_left: FloatProperty(default=-1.0, options=NOT_ANIMATABLE)
    warning_count: IntProperty(options=NOT_ANIMATABLE)
    last_warning: StringProperty(options=NOT_ANIMATABLE)
    last_error: StringProperty(options=NOT_ANIMATABLE)
    last_hint: StringProperty(options=NOT_ANIMATABLE)
    last_log: StringProperty(options=NOT_ANIMATABLE, description="The runtime's last messages, one per line")
    last_result: StringProperty(options=NOT_ANIMATABLE)
    capture_dir: StringProperty(subtype="DIR_PATH", options=NOT_ANIMATABLE)


TEXT_FIELDS = (schema.TEXT, schema.TEXT_LIST, schema.NUMBER)
"""Option kinds the panel shows as a text field, where empty means "not given"."""


def panel_options() -> tuple:
    """The schema's options that the panel shows, in the schema's order."""
    return tuple(option for option in schema.OPTIONS if option.panel)


def option_property(option):
    """The Blender property of one schema option: an enum of its choices, a checkbox or a text field
    (a number is text too, so that an empty field can mean "not given")."""
    common = {"name": option.label, "description": option.help_text()}
    if option.kind == schema.CHOICE:
        items = [(choice, choice.title(), "") for choice in option.choices]
        return EnumProperty(items=items, default=option.default, **common)
    if option.kind == schema.FLAG:
        return BoolProperty(default=option.default, **common)
    if option.kind in TEXT_FIELDS:
        return StringProperty(default="" if option.default in (None, []) else str(option.default), **common)
    raise TypeError(f"option {option.name} of kind {option.kind} has no panel property")


def panel_values(settings) -> dict:
    """The panel's option values as the runtime takes them (an empty text is "not given")."""
    values = {}
    for option in panel_options():
        value = getattr(settings, option.name)
        if option.kind in TEXT_FIELDS:
            value = value.strip() or None
        values[option.name] = value
    return values


for _option in panel_options():
    FACEANYTHING_PG_settings.__annotations__[_option.name] = option_property(_option)

classes = (FACEANYTHING_PG_settings,)


def register_properties() -> None:
    bpy.types.Scene.faceanything = PointerProperty(type=FACEANYTHING_PG_settings)


def unregister_properties() -> None:
    del bpy.types.Scene.faceanything
