"""Custom properties that mark what a capture created, so a re-run replaces only its own data.

Tags are copied with the data: Shift+D and Alt+D give the copy the capture's tag too. So the
tag only says where an object came from; which data-blocks the capture itself made is recorded
on its collection as pointers (`MADE_KEY`), which duplicating an object never touches.
"""
from __future__ import annotations

import bpy

# On every object, collection, action and object data a capture creates: the capture's id.
CAPTURE_KEY = "faceanything_capture"
# On every point empty: the tracked point's name (e.g. "mouth_corner_L").
POINT_KEY = "faceanything_point"
# On every point empty, animated: 1 on frames where the point was seen, 0 where it was hidden.
VISIBLE_KEY = "visible"
# On the capture's collection: a group of pointers to every data-block the capture made.
MADE_KEY = "faceanything_made"


def record_made(collection: bpy.types.Collection, datablock: bpy.types.ID) -> None:
    """Remember that the capture of ``collection`` made ``datablock``."""
    if MADE_KEY not in collection:
        collection[MADE_KEY] = {}
    made = collection[MADE_KEY]
    made[str(len(made))] = datablock


def take_made(collection: bpy.types.Collection) -> list[bpy.types.ID]:
    """The data-blocks the capture of ``collection`` made and that still exist; forgets them,
    so the pointers no longer count as users."""
    made = collection.get(MADE_KEY)
    if made is None:
        return []
    blocks = [block for block in made.values() if isinstance(block, bpy.types.ID)]
    del collection[MADE_KEY]
    return blocks
