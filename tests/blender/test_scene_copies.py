"""Copies an artist makes of capture objects belong to the artist: a re-run keeps them."""
from __future__ import annotations

import bpy

from faceanything_blender.scene import build_capture
from tests.blender.scene_fixtures import (
    evaluated_world_vertices,
    expected_world,
    fresh_scene,  # noqa: F401 - fixture
    make_capture,
)


def duplicate(obj, linked: bool):
    """Shift+D (``linked=False``) or Alt+D on ``obj``; returns the copy."""
    before = set(bpy.data.objects)
    with bpy.context.temp_override(active_object=obj, selected_objects=[obj], selected_editable_objects=[obj]):
        assert bpy.ops.object.duplicate(linked=linked) == {"FINISHED"}
    [copy] = set(bpy.data.objects) - before
    return copy


def test_duplicates_moved_to_another_collection_survive_a_rerun(fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=5)
    built = build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")
    face, chin = bpy.data.objects[built["mesh"]], bpy.data.objects[built["points"]["chin"]]
    mine = bpy.data.collections.new("artist's")
    fresh_scene.collection.children.link(mine)
    copies = [duplicate(face, linked=False), duplicate(face, linked=True), duplicate(chin, linked=True)]
    for copy in copies:
        for collection in list(copy.users_collection):
            collection.objects.unlink(copy)
        mine.objects.link(copy)
    names = [copy.name for copy in copies]

    again = build_capture(fresh_scene, capture_dir, footage="", animation="SHAPE_KEYS")
    assert [obj.name for obj in mine.objects] == names  # every copy is still there
    assert again["mesh"] == "FA_face" and again["points"]["chin"] == "FA_chin"  # the capture's own were replaced
    assert set(again["points"].values()).isdisjoint(names)
    fresh_scene.frame_set(4)
    for copy in copies[:2]:  # the copies still play the captured motion
        assert abs(evaluated_world_vertices(copy) - expected_world(reconstruction.vertices[3])).max() < 1e-6
    assert copies[2].animation_data.action is not None
