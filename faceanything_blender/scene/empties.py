"""The capture's empties: a root at the origin, the head carrying the rigid motion, and one
empty per tracked point riding on the head.

A point empty's parent-inverse matrix holds the point's rest place on the face (in head
axes), so its Location channels are the expression alone: zero on the neutral face, the
point's offset in metres otherwise. Rig constraints read exactly that (its LOCAL space).

Its custom property ``visible`` (tags.VISIBLE_KEY) is keyed on every captured frame, constant:
1 where the point was seen, 0 where it was hidden (turned away, covered) and its place filled
in. A driver can read it, e.g. to fade a constraint's influence or a compositing mask.
"""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from .animation import Curve, animate, vector_curves
from .tags import VISIBLE_KEY

ROOT_SIZE_M = 0.1
HEAD_SIZE_M = 0.05
POINT_SIZE_M = 0.005


def create_empty(name: str, display: str, size: float) -> bpy.types.Object:
    empty = bpy.data.objects.new(name, None)
    empty.empty_display_type = display
    empty.empty_display_size = size
    return empty


def head_transform_curves(frames: np.ndarray, world_matrices: np.ndarray) -> list[Curve]:
    """Location, continuous XYZ Euler rotation and scale curves of (T, 4, 4) matrices."""
    count = len(world_matrices)
    location, rotation, scale = np.empty((count, 3)), np.empty((count, 3)), np.empty((count, 3))
    previous = None
    for t, matrix in enumerate(world_matrices):
        translation, quaternion, size = Matrix(matrix.tolist()).decompose()
        # Each Euler chosen closest to the previous one, so curves never jump by 360 degrees.
        euler = quaternion.to_euler("XYZ", previous) if previous is not None else quaternion.to_euler("XYZ")
        location[t], rotation[t], scale[t], previous = translation, euler, size, euler
    return (
        vector_curves("location", frames, location, "Object Transforms")
        + vector_curves("rotation_euler", frames, rotation, "Object Transforms")
        + vector_curves("scale", frames, scale, "Object Transforms")
    )


def animate_point(
    empty: bpy.types.Object,
    rest_head: np.ndarray,
    frames: np.ndarray,
    offsets: np.ndarray,
    visible: np.ndarray,
    action: bpy.types.Action,
) -> None:
    """Place ``empty`` (already parented to the head) at ``rest_head`` plus (T, 3) ``offsets``
    and key its ``visible`` property from (T,) ``visible``."""
    empty.matrix_parent_inverse = Matrix.Translation(rest_head.tolist())
    animate(empty, action, vector_curves("location", frames, offsets, "Object Transforms"))
    empty[VISIBLE_KEY] = 1
    empty.id_properties_ui(VISIBLE_KEY).update(
        min=0, max=1, description="1 where the tracked point was seen in the footage, 0 where it was hidden"
    )
    curve = Curve(f'["{VISIBLE_KEY}"]', 0, frames, np.asarray(visible, np.float64), "Visibility")
    animate(empty, action, [curve], interpolation="CONSTANT")
