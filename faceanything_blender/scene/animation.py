"""Bulk F-curve writes through Blender 5's slotted actions.

Every curve is written whole: ``keyframe_points.add(n)`` then ``foreach_set`` on the
coordinates and interpolation modes (never ``keyframe_insert`` in a loop, which is about 60
times slower). One action can animate many data-blocks, each through its own slot.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from bpy_extras import anim_utils

_INTERPOLATION_ITEMS = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items


@dataclass
class Curve:
    """One animated channel: ``data_path[index]`` takes ``values[i]`` at ``frames[i]``."""

    data_path: str
    index: int
    frames: np.ndarray
    values: np.ndarray
    group: str = ""


def vector_curves(data_path: str, frames: np.ndarray, values: np.ndarray, group: str = "") -> list[Curve]:
    """One curve per column of ``values`` (T, N): location, rotation_euler, scale and the like."""
    return [Curve(data_path, i, frames, values[:, i], group) for i in range(values.shape[1])]


def slot_for(action: bpy.types.Action, datablock: bpy.types.ID) -> bpy.types.ActionSlot:
    """The slot ``datablock`` already uses in ``action``, else the action's slot of its name,
    made if missing."""
    animation_data = datablock.animation_data
    if animation_data and animation_data.action == action and animation_data.action_slot is not None:
        return animation_data.action_slot
    id_type = datablock.id_type
    for slot in action.slots:
        if slot.target_id_type == id_type and slot.name_display == datablock.name:
            return slot
    return action.slots.new(id_type=id_type, name=datablock.name)


def animate(
    datablock: bpy.types.ID, action: bpy.types.Action, curves: list[Curve], interpolation: str = "LINEAR"
) -> None:
    """Assign ``action`` to ``datablock`` through its own slot and write ``curves`` into it,
    replacing curves of the same channel."""
    slot = slot_for(action, datablock)
    animation_data = datablock.animation_data or datablock.animation_data_create()
    animation_data.action = action
    animation_data.action_slot = slot
    write_curves(anim_utils.action_ensure_channelbag_for_slot(action, slot), curves, interpolation)


def write_curves(channelbag, curves: list[Curve], interpolation: str) -> None:
    mode = _INTERPOLATION_ITEMS[interpolation].value
    for curve in curves:
        existing = channelbag.fcurves.find(curve.data_path, index=curve.index)
        if existing is not None:
            channelbag.fcurves.remove(existing)
        fcurve = channelbag.fcurves.new(curve.data_path, index=curve.index, group_name=curve.group)
        count = len(curve.frames)
        coordinates = np.empty((count, 2), np.float32)
        coordinates[:, 0] = curve.frames
        coordinates[:, 1] = curve.values
        fcurve.keyframe_points.add(count)
        fcurve.keyframe_points.foreach_set("co", coordinates.ravel())
        fcurve.keyframe_points.foreach_set("interpolation", np.full(count, mode, np.int32))
        fcurve.update()
