"""Drive a character from a capture's ARKit-52 curves, then bake it so the capture can go.

The control object (``FA_expressions``, scene/expressions.py) carries the curves as custom
properties. *Drive Shape Keys* gives every shape key of the active mesh whose name is a spelling
of an ARKit name (``jawOpen``, ``eyeBlink_L``, ``EyeBlinkLeft``, ``Faceit_mouthSmile.L``, ...;
see model_runtime/expressions/arkit.py) a driver ``w * g``: the curve times the mesh's
``FA_expression_gain`` property (set from Gain, editable afterwards). *Bind Head and Eyes* drives
bones' Euler rotations from the head and gaze angles. *Bake Expressions* evaluates every frame
of the scene's range, keys the driven values and removes the drivers. The character never has to
be the captured face: only the names matter.

Bone axes (Blender's convention for a character facing -Y with Z up): a head bone points up the
neck (local Y up, X to the character's left, Z forward) and takes pitch on X (chin down), yaw on
-Y and roll on -Z ('ZXY' order, yaw applied last); eye bones point forward out of the eye (local
Y forward, roll 0: X to the character's right, Z up) and take pitch on X (up) and yaw on Z
(toward the character's left).
"""
from __future__ import annotations

import bpy
import numpy as np
from bpy.props import FloatProperty, StringProperty

from .runtime_paths import runtime_module
from .scene.animation import Curve, animate
from .scene.expressions import EXPRESSIONS_KEY

GAIN_PROPERTY = "FA_expression_gain"
HEAD_CHANNELS = (("headPitch", 0, 1.0), ("headYaw", 1, -1.0), ("headRoll", 2, -1.0))  # (property, axis, sign)
EYE_CHANNELS = {"left": (("leftEyePitch", 0, 1.0), ("leftEyeYaw", 2, 1.0)),
                "right": (("rightEyePitch", 0, 1.0), ("rightEyeYaw", 2, 1.0))}
HEAD_ROTATION_MODE, EYE_ROTATION_MODE = "ZXY", "XZY"


def expression_controls(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """The scene's control objects, by name."""
    return sorted((obj for obj in scene.objects if obj.get(EXPRESSIONS_KEY)), key=lambda obj: obj.name)


def find_control(scene: bpy.types.Scene, name: str = "") -> bpy.types.Object | None:
    """The control object called ``name``, or the scene's first one when ``name`` is empty."""
    controls = expression_controls(scene)
    if name:
        return next((obj for obj in controls if obj.name == name), None)
    return controls[0] if controls else None


def drive_shape_keys(mesh: bpy.types.Object, control: bpy.types.Object, gain: float) -> dict:
    """Driver ``w * g`` on every shape key of ``mesh`` named like an ARKit shape. Returns
    {"matched": {shape key: ARKit name}, "missing": [ARKit names with no shape key]}."""
    arkit = runtime_module("expressions.arkit")
    keys = mesh.data.shape_keys
    names = [block.name for block in keys.key_blocks[1:]] if keys else []  # the first key is the basis
    matched = arkit.match_shape_keys(names)
    missing = [name for name in arkit.ARKIT_NAMES if name not in set(matched.values())]
    if not matched:
        return {"matched": matched, "missing": missing}
    mesh[GAIN_PROPERTY] = float(gain)
    for key_name, arkit_name in matched.items():
        block = keys.key_blocks[key_name]
        block.driver_remove("value")
        driver = block.driver_add("value").driver
        driver.type = "SCRIPTED"
        _add_variable(driver, "w", control, f'["{arkit_name}"]')
        _add_variable(driver, "g", mesh, f'["{GAIN_PROPERTY}"]')
        driver.expression = "w * g"
    return {"matched": matched, "missing": missing}


def bind_bones(armature: bpy.types.Object, control: bpy.types.Object, head: str = "",
               left_eye: str = "", right_eye: str = "") -> list[str]:
    """Drive the named bones' rotations from the control's head and gaze angles (empty names
    are skipped); returns problems in words (a bone the armature lacks)."""
    problems = []
    for bone_name, channels, mode in ((head, HEAD_CHANNELS, HEAD_ROTATION_MODE),
                                      (left_eye, EYE_CHANNELS["left"], EYE_ROTATION_MODE),
                                      (right_eye, EYE_CHANNELS["right"], EYE_ROTATION_MODE)):
        if not bone_name:
            continue
        pose_bone = armature.pose.bones.get(bone_name)
        if pose_bone is None:
            problems.append(f"{armature.name} has no bone {bone_name!r}")
            continue
        pose_bone.rotation_mode = mode
        for prop, axis, sign in channels:
            pose_bone.driver_remove("rotation_euler", axis)
            driver = pose_bone.driver_add("rotation_euler", axis).driver
            driver.type = "SCRIPTED"
            _add_variable(driver, "a", control, f'["{prop}"]')
            driver.expression = "a" if sign > 0 else "-a"
    return problems


def _add_variable(driver, name: str, target: bpy.types.ID, data_path: str) -> None:
    variable = driver.variables.new()
    variable.name = name
    variable.type = "SINGLE_PROP"
    variable.targets[0].id_type = "OBJECT"
    variable.targets[0].id = target
    variable.targets[0].data_path = data_path


def expression_drivers(datablock: bpy.types.ID) -> list:
    """The drivers of ``datablock`` that read a control object."""
    animation_data = datablock.animation_data if datablock is not None else None
    if animation_data is None:
        return []
    return [fcurve for fcurve in animation_data.drivers
            if any(target.id is not None and target.id.get(EXPRESSIONS_KEY)
                   for variable in fcurve.driver.variables for target in variable.targets)]


def bake_expressions(scene: bpy.types.Scene, obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> dict:
    """Key every value that a control object drives on ``obj`` (its shape keys, or its bones)
    over the scene's frame range, then remove those drivers. Returns {"channels": count,
    "frames": count}."""
    datablock = obj.data.shape_keys if obj.type == "MESH" else obj
    drivers = [(fcurve.data_path, fcurve.array_index) for fcurve in expression_drivers(datablock)]
    if not drivers:
        return {"channels": 0, "frames": 0}
    frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.float64)
    values = np.empty((len(frames), len(drivers)))
    saved_frame = scene.frame_current
    for f, frame in enumerate(frames):
        scene.frame_set(int(frame))
        evaluated = datablock.evaluated_get(depsgraph)
        values[f] = [_read(evaluated, path, index) for path, index in drivers]
    scene.frame_set(saved_frame)
    for path, index in drivers:
        datablock.driver_remove(path, index)
    curves = [Curve(path, index, frames, values[:, c], "FA baked") for c, (path, index) in enumerate(drivers)]
    animation_data = datablock.animation_data
    action = animation_data.action if animation_data and animation_data.action else bpy.data.actions.new(
        f"{obj.name} expressions")
    animate(datablock, action, curves)
    return {"channels": len(drivers), "frames": len(frames)}


def _read(datablock: bpy.types.ID, path: str, index: int) -> float:
    value = datablock.path_resolve(path)
    return float(value[index]) if hasattr(value, "__getitem__") else float(value)


class FACEANYTHING_OT_drive_shape_keys(bpy.types.Operator):
    """Drive the active mesh's ARKit-named shape keys from the capture's expression curves"""

    bl_idname = "faceanything.drive_shape_keys"
    bl_label = "Drive Shape Keys"
    bl_options = {"REGISTER", "UNDO"}

    gain: FloatProperty(name="Gain", description="Multiplies every curve", default=1.0, min=0.0, soft_max=2.0)
    control: StringProperty(name="Control", description="Control object (empty: the scene's first FA_expressions)")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH"

    def execute(self, context):
        mesh = context.active_object
        control = find_control(context.scene, self.control)
        if control is None:
            self.report({"ERROR"}, "No expression control object in the scene: capture (or rebuild) a clip first")
            return {"CANCELLED"}
        result = drive_shape_keys(mesh, control, self.gain)
        if not result["matched"]:
            self.report({"ERROR"}, f"{mesh.name} has no shape key named like an ARKit shape (jawOpen, eyeBlink_L, ...)")
            return {"CANCELLED"}
        found, missing = ", ".join(sorted(result["matched"])), ", ".join(result["missing"]) or "none"
        self.report({"INFO"}, f"{mesh.name}: {len(result['matched'])} of 52 ARKit shapes driven ({found}); "
                              f"not found: {missing}")
        return {"FINISHED"}


class FACEANYTHING_OT_bind_expression_bones(bpy.types.Operator):
    """Drive the active armature's head and eye bones from the capture's head and gaze angles"""

    bl_idname = "faceanything.bind_expression_bones"
    bl_label = "Bind Head and Eyes"
    bl_options = {"REGISTER", "UNDO"}

    head_bone: StringProperty(name="Head", description="Bone that takes the head rotation")
    left_eye_bone: StringProperty(name="Left Eye", description="Bone of the character's left eye")
    right_eye_bone: StringProperty(name="Right Eye", description="Bone of the character's right eye")
    control: StringProperty(name="Control", description="Control object (empty: the scene's first FA_expressions)")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "ARMATURE"

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        pose = context.active_object.pose
        for prop in ("head_bone", "left_eye_bone", "right_eye_bone"):
            self.layout.prop_search(self, prop, pose, "bones")

    def execute(self, context):
        control = find_control(context.scene, self.control)
        if control is None:
            self.report({"ERROR"}, "No expression control object in the scene: capture (or rebuild) a clip first")
            return {"CANCELLED"}
        problems = bind_bones(context.active_object, control, self.head_bone, self.left_eye_bone, self.right_eye_bone)
        if problems:
            self.report({"WARNING"}, "; ".join(problems))
        return {"FINISHED"}


class FACEANYTHING_OT_bake_expressions(bpy.types.Operator):
    """Key what expression curves drive on the active object over the scene's range, then remove the drivers"""

    bl_idname = "faceanything.bake_expressions"
    bl_label = "Bake Expressions"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type in {"MESH", "ARMATURE"}

    def execute(self, context):
        result = bake_expressions(context.scene, context.active_object, context.evaluated_depsgraph_get())
        if not result["channels"]:
            self.report({"WARNING"}, f"Nothing on {context.active_object.name} is driven by expression curves")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Baked {result['channels']} channels over {result['frames']} frames")
        return {"FINISHED"}


def draw_expressions_section(layout, context) -> None:
    """The Expressions sub-panel's contents."""
    controls = expression_controls(context.scene)
    if not controls:
        layout.label(text="Capture a clip to get its ARKit expression curves", icon="INFO")
        return
    layout.label(text=f"Curves: {controls[0].name}", icon="SHAPEKEY_DATA")
    column = layout.column(align=True)
    column.operator(FACEANYTHING_OT_drive_shape_keys.bl_idname, icon="DRIVER")
    column.operator(FACEANYTHING_OT_bind_expression_bones.bl_idname, icon="BONE_DATA")
    column.operator(FACEANYTHING_OT_bake_expressions.bl_idname, icon="KEYINGSET")


classes = (FACEANYTHING_OT_drive_shape_keys, FACEANYTHING_OT_bind_expression_bones, FACEANYTHING_OT_bake_expressions)
