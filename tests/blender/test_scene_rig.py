"""Rig binding and baking: bones follow the capture's empties, and keep their motion once baked
and the capture is deleted."""
from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy.props import CollectionProperty, PointerProperty

from faceanything_blender import rig, rig_props
from faceanything_blender.scene import build_capture
from faceanything_blender.scene.build import remove_capture
from tests.blender.scene_fixtures import fresh_scene, make_capture  # noqa: F401 - fixture

BONES = {  # name: (head, tail, roll) in armature space; the rig faces -Y with Z up, like Rigify
    "lips.L": ((0.03, -0.09, 0.0), (0.03, -0.07, 0.0), 0.0),
    "nose.002": ((0.0, -0.11, 0.05), (0.0, -0.11, 0.07), 0.7),  # points up, rolled: axes unlike the armature's
    "jaw": ((0.0, -0.02, 0.0), (0.0, -0.09, -0.04), 0.0),
    "brow.T.L.002": ((0.035, -0.08, 0.09), (0.045, -0.08, 0.1), 0.0),
    "lips.R": ((-0.03, -0.09, 0.0), (-0.03, -0.07, 0.0), 0.0),
    "tail": ((0.0, 0.1, 0.0), (0.0, 0.2, 0.0), 0.0),
}


class StandInSettings(bpy.types.PropertyGroup):
    """The two fields the add-on's settings give the rig operators, for when it cannot be enabled."""

    rig_armature: PointerProperty(type=bpy.types.Object)
    rig_bindings: CollectionProperty(type=rig_props.FACEANYTHING_PG_rig_binding)


@pytest.fixture
def rig_operators(request, fresh_scene):  # noqa: F811
    """The rig module whose operators are registered, with ``Scene.faceanything`` in place: the
    add-on's own when it can be enabled, else this checkout's classes on stand-in settings."""
    stand_in = ()
    try:
        addon = request.getfixturevalue("addon")
        module = importlib.import_module(f"{addon.__name__}.rig")
    except Exception:  # noqa: BLE001 - the add-on cannot be enabled (yet): test the rig on its own
        module, stand_in = rig, (*rig_props.classes, StandInSettings)
        for cls in stand_in:
            bpy.utils.register_class(cls)
        bpy.types.Scene.faceanything = PointerProperty(type=StandInSettings)
    ours = () if hasattr(bpy.types, "FACEANYTHING_OT_bind_rig") else module.classes
    for cls in ours:
        bpy.utils.register_class(cls)
    yield module
    for cls in reversed(ours):
        bpy.utils.unregister_class(cls)
    if stand_in:
        del bpy.types.Scene.faceanything
        for cls in reversed(stand_in):
            bpy.utils.unregister_class(cls)


def make_armature(scene, location=(0.4, 0.3, -0.2), rotation_z=math.radians(30)):
    data = bpy.data.armatures.new("Face rig")
    armature = bpy.data.objects.new("Face rig", data)
    scene.collection.objects.link(armature)
    armature.location, armature.rotation_euler = location, (0.0, 0.0, rotation_z)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for name, (head, tail, roll) in BONES.items():
        bone = data.edit_bones.new(name)
        bone.head, bone.tail, bone.roll = head, tail, roll
    bpy.ops.object.mode_set(mode="OBJECT")
    return armature


def add_row(settings, bone, target, mode, influence=1.0, gain=1.0):
    row = settings.rig_bindings.add()
    row.bone, row.target, row.mode, row.influence, row.gain = bone, target, mode, influence, gain


def pose_over_frames(scene, armature) -> dict[int, dict[str, np.ndarray]]:
    poses = {}
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        evaluated = armature.evaluated_get(bpy.context.evaluated_depsgraph_get())
        poses[frame] = {pb.name: np.array(pb.matrix) for pb in evaluated.pose.bones}
    return poses


@pytest.fixture
def captured_rig(rig_operators, fresh_scene, tmp_path):  # noqa: F811
    capture_dir, reconstruction = make_capture(tmp_path / "capture", frame_count=8)
    build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    armature = make_armature(fresh_scene)
    settings = fresh_scene.faceanything
    settings.rig_armature = armature
    return capture_dir, armature, settings


def test_bound_bones_follow_the_empties(captured_rig, fresh_scene):  # noqa: F811
    _, armature, settings = captured_rig
    add_row(settings, "lips.L", "FA_mouth_corner_L", "TRANSFORM", influence=0.8, gain=2.5)
    add_row(settings, "nose.002", "FA_nose_tip", "COPY_LOCATION")
    add_row(settings, "jaw", "FA_chin", "DAMPED_TRACK")
    assert bpy.ops.faceanything.bind_rig() == {"FINISHED"}
    assert bpy.ops.faceanything.bind_rig() == {"FINISHED"}  # binding again replaces, never stacks
    assert [c.name for pb in armature.pose.bones for c in pb.constraints] == ["FA Offset", "FA Copy Offset", "FA Aim"]

    rest = {bone.name: np.array(bone.head_local) for bone in armature.data.bones}
    poses = pose_over_frames(fresh_scene, armature)
    moved = 0.0
    for frame, pose in poses.items():
        fresh_scene.frame_set(frame)
        corner = np.array(bpy.data.objects["FA_mouth_corner_L"].location)
        nose = np.array(bpy.data.objects["FA_nose_tip"].location)
        # Offsets in head axes move bones by the same vector in armature space, whatever the bone's axes.
        assert np.allclose(pose["lips.L"][:3, 3] - rest["lips.L"], 0.8 * 2.5 * corner, atol=1e-6)
        assert np.allclose(pose["nose.002"][:3, 3] - rest["nose.002"], nose, atol=1e-6)
        chin_world = np.array([*bpy.data.objects["FA_chin"].matrix_world.translation, 1.0])
        aim = (np.linalg.inv(np.array(armature.matrix_world)) @ chin_world)[:3] - pose["jaw"][:3, 3]
        assert np.allclose(pose["jaw"][:3, 1], aim / np.linalg.norm(aim), atol=1e-5)
        moved = max(moved, np.linalg.norm(corner))
    assert moved > 1e-3  # the capture really moves the points


def test_baked_rig_moves_the_same_without_the_capture(captured_rig, fresh_scene):  # noqa: F811
    capture_dir, armature, settings = captured_rig
    add_row(settings, "lips.L", "FA_mouth_corner_L", "TRANSFORM", gain=3.0)
    add_row(settings, "brow.T.L.002", "FA_brow_mid_L", "COPY_LOCATION", influence=0.5)
    add_row(settings, "jaw", "FA_chin", "DAMPED_TRACK")
    # A rig's own constraint on a bound bone, as Rigify's lids follow the eyes: "tail" is the eye.
    follow = armature.pose.bones["brow.T.L.002"].constraints.new("COPY_LOCATION")
    follow.target, follow.subtarget, follow.influence, follow.use_offset = armature, "tail", 0.3, True
    armature.pose.bones["tail"].location = (0.01, 0.0, 0.02)
    # Each rotation mode gets its own channels.
    armature.pose.bones["jaw"].rotation_mode = "ZXY"
    armature.pose.bones["brow.T.L.002"].rotation_mode = "AXIS_ANGLE"
    bpy.ops.faceanything.bind_rig()
    constrained = pose_over_frames(fresh_scene, armature)

    assert bpy.ops.faceanything.bake_rig() == {"FINISHED"}
    constraints = {pb.name: [(c.name, c.mute) for c in pb.constraints] for pb in armature.pose.bones if pb.constraints}
    assert constraints == {"brow.T.L.002": [("Copy Location", False)]}  # only the capture's constraints went
    remove_capture(str(capture_dir.resolve()))
    assert not any(obj.name.startswith("FA_") for obj in fresh_scene.objects)
    baked = pose_over_frames(fresh_scene, armature)
    for frame in constrained:
        for bone in ("lips.L", "brow.T.L.002", "jaw"):
            assert np.allclose(baked[frame][bone], constrained[frame][bone], atol=1e-5), (frame, bone)
    curves = armature.animation_data.action.layers[0].strips[0].channelbag(armature.animation_data.action_slot).fcurves
    assert {len(curve.keyframe_points) for curve in curves} == {8}
    rotations = {(curve.data_path.split('"')[1], curve.data_path.rsplit(".", 1)[1]) for curve in curves}
    expected = {("jaw", "rotation_euler"), ("brow.T.L.002", "rotation_axis_angle"), ("lips.L", "rotation_quaternion")}
    assert expected <= rotations
    with pytest.raises(RuntimeError, match="no capture constraints"):
        bpy.ops.faceanything.bake_rig()
    # The rig's constraint still works after the bake: the brow follows when the "eye" moves.
    armature.pose.bones["tail"].location = (0.01, 0.0, 0.07)  # 5 cm along the bone's local Y
    moved = pose_over_frames(fresh_scene, armature)
    eye_shift = moved[1]["tail"][:3, 3] - baked[1]["tail"][:3, 3]
    assert np.linalg.norm(eye_shift) > 0.04
    for frame in constrained:
        assert np.allclose(moved[frame]["brow.T.L.002"][:3, 3] - baked[frame]["brow.T.L.002"][:3, 3], 0.3 * eye_shift,
                           atol=1e-6), frame


def test_rigify_preset_fills_the_table_with_matching_bones(captured_rig, fresh_scene):  # noqa: F811
    _, _, settings = captured_rig
    assert bpy.ops.faceanything.rig_preset() == {"FINISHED"}
    rows = {(row.bone, row.target, row.mode) for row in settings.rig_bindings}
    assert rows == {
        ("lips.L", "FA_mouth_corner_L", "TRANSFORM"),
        ("lips.R", "FA_mouth_corner_R", "TRANSFORM"),
        ("brow.T.L.002", "FA_brow_mid_L", "TRANSFORM"),
        ("nose.002", "FA_nose_tip", "TRANSFORM"),
        ("jaw", "FA_chin", "TRANSFORM"),  # no "chin" bone in this rig: the jaw takes the chin
    }
    assert bpy.ops.faceanything.bind_rig() == {"FINISHED"}


def test_bind_reports_rows_it_cannot_bind(captured_rig, fresh_scene):  # noqa: F811
    _, armature, settings = captured_rig
    add_row(settings, "no such bone", "FA_chin", "TRANSFORM")
    add_row(settings, "jaw", "FA_not_there", "TRANSFORM")
    with pytest.raises(RuntimeError, match="No bone was bound"):
        bpy.ops.faceanything.bind_rig()
    assert rig.bind_rig(armature, settings.rig_bindings, fresh_scene.objects) == [
        "row 1: Face rig has no bone 'no such bone'",
        "row 2: no object 'FA_not_there' in the scene",
    ]


def test_binding_rows_can_be_added_and_removed(captured_rig, fresh_scene):  # noqa: F811
    _, _, settings = captured_rig
    bpy.ops.faceanything.rig_binding_add()
    bpy.ops.faceanything.rig_binding_add()
    settings.rig_bindings[1].bone = "jaw"
    bpy.ops.faceanything.rig_binding_remove(index=0)
    assert [row.bone for row in settings.rig_bindings] == ["jaw"]


def test_rig_section_draws_the_table_and_its_buttons(captured_rig, fresh_scene, rig_operators):  # noqa: F811
    from conftest import RecordingLayout, texts

    _, _, settings = captured_rig
    add_row(settings, "jaw", "FA_chin", "TRANSFORM")
    add_row(settings, "lips.L", "FA_mouth_corner_L", "DAMPED_TRACK")
    calls = []
    rig_operators.draw_rig_section(RecordingLayout(calls), bpy.context)
    operators = [args["operator"] for name, args in calls if name == "operator"]
    assert operators == [
        "faceanything.rig_preset",
        "faceanything.rig_binding_add",
        "faceanything.rig_binding_remove",
        "faceanything.rig_binding_remove",
        "faceanything.bind_rig",
        "faceanything.bake_rig",
    ]
    shown = [(args["data"], args["property"]) for name, args in calls if name == "prop"]
    assert shown.count((settings.rig_bindings[0], "gain")) == 1 and (settings.rig_bindings[1], "gain") not in shown
    settings.rig_armature = None
    calls.clear()
    rig_operators.draw_rig_section(RecordingLayout(calls), bpy.context)
    assert "Pick an armature" in texts(calls)


def test_target_search_offers_the_capture_empties(captured_rig, fresh_scene):  # noqa: F811
    assert rig_props.point_empty_names(None, bpy.context, "MOUTH") == ["FA_mouth_corner_L", "FA_mouth_corner_R"]
    assert "FA_head" not in rig_props.point_empty_names(None, bpy.context, "")


RIGIFY_SCRIPT = """
import json, bpy, addon_utils
from faceanything_blender import rig
addon_utils.enable("rigify", default_set=True)
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.object.armature_human_metarig_add()
metarig = bpy.context.active_object
bpy.ops.pose.rigify_generate()
[generated] = [obj for obj in bpy.data.objects if obj.type == "ARMATURE" and obj != metarig]
empties = {point: "FA_" + point for point in rig.rigify_face_preset()}
pairs = rig.preset_bindings(generated, empties)
print(json.dumps({target[3:]: [bone, list(generated.data.bones[bone].head_local)] for bone, target in pairs}))
"""


def test_rigify_preset_names_real_rigify_controls_in_the_right_places(tmp_path):
    """Generates Rigify's human rig (in a subprocess: Rigify stays out of this session) and checks
    each preset control sits where its point sits on the runtime's canonical face."""
    repo = Path(__file__).resolve().parents[2]
    template = np.load(repo / "model_runtime" / "data" / "canonical_face.npz")
    landmarks = dict(zip(map(str, template["landmark_names"]), template["landmark_indices"]))
    assert set(rig.rigify_face_preset()) <= set(landmarks), "preset points the runtime does not track"
    environment = dict(os.environ, PYTHONPATH=str(repo), BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    done = subprocess.run([sys.executable, "-c", RIGIFY_SCRIPT], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    bound = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(bound) == set(rig.rigify_face_preset())  # every preset point found its control
    canonical = np.array([template["vertices"][landmarks[point]] for point in bound])
    head_axes = canonical[:, [0, 2, 1]] * [1, -1, 1]  # canonical (x left, y up, z out) -> (x left, y back, z up)
    heads = np.array([head for _bone, head in bound.values()])
    # Fit scale and offset (both face -Y, Z up, +X the left side), then compare places.
    design = np.concatenate([head_axes.reshape(-1, 1), np.kron(np.ones((len(bound), 1)), np.eye(3))], axis=1)
    solution, *_ = np.linalg.lstsq(design, heads.reshape(-1), rcond=None)
    residual = (design @ solution - heads.reshape(-1)).reshape(-1, 3)
    assert solution[0] > 0 and np.linalg.norm(residual, axis=1).max() < 0.02, dict(zip(bound, residual.round(3)))
