"""Drive an armature's bones from a capture's empties, then bake them so the capture can go.

Binding adds one constraint per row of ``Scene.faceanything.rig_bindings``, named ``FA ...``:

* Offset (TRANSFORM): the bone moves by the point's offset from its rest place on the face
  times Gain. The empty's LOCAL space is that offset in head axes (see scene/empties.py), which
  are the armature-space axes of a rig facing -Y with Z up (Rigify), so the constraint adds it
  in the bone's POSE (armature) space whatever the bone's own orientation.
* Copy Offset (COPY_LOCATION): the same without gain (Copy Location with offset).
* Aim (DAMPED_TRACK): the bone points at the empty itself, for a rig placed over the capture.

Baking removes only what binding added. It evaluates every frame of the scene's range with the
bound bones' other constraints (the rig's own: Rigify's lids following the eyes) switched off,
keys the resulting local transforms (the bones' own channels plus the ``FA`` constraints;
bulk F-curve writes), removes the ``FA`` constraints and switches the rig's constraints back
on, so they keep working on top of the baked motion. Playback is what it was wherever the rig's
constraints and the capture's add up (offsets, Copy Location with offset, Transform in Add
mode), which is how the Offset and Copy Offset modes drive a bone. It needs no window or
operator context, so it works headless.
"""
from __future__ import annotations

import bpy
import numpy as np
from bpy.props import IntProperty
from mathutils import Quaternion

from .scene.animation import Curve, animate, vector_curves
from .scene.tags import POINT_KEY

CONSTRAINT_PREFIX = "FA "
CONSTRAINT_NAMES = {"TRANSFORM": "FA Offset", "COPY_LOCATION": "FA Copy Offset", "DAMPED_TRACK": "FA Aim"}
# Offsets are mapped through [-OFFSET_RANGE_M, OFFSET_RANGE_M] (and extrapolated beyond).
OFFSET_RANGE_M = 1.0

# Point -> Rigify face controls that should follow it (first found wins), as Blender 5.0's
# Rigify generates them from its human metarig. Right sides are mirrored from these.
RIGIFY_FACE_LEFT = {
    "mouth_corner_L": ("lips.L",),
    "eye_upper_lid_L": ("lid.T.L.002",),
    "eye_lower_lid_L": ("lid.B.L.002",),
    "brow_outer_L": ("brow.T.L.001",),
    "brow_mid_L": ("brow.T.L.002",),
    "brow_inner_L": ("brow.T.L.003",),
}
RIGIFY_FACE_MIDDLE = {
    "upper_lip_outer": ("lip.T",),
    "lower_lip_outer": ("lip.B",),
    "nose_tip": ("nose.002",),
    "chin": ("chin", "jaw_master", "jaw"),
}


def rigify_face_preset() -> dict[str, tuple[str, ...]]:
    preset = dict(RIGIFY_FACE_MIDDLE)
    for point, bones in RIGIFY_FACE_LEFT.items():
        preset[point] = bones
        preset[point.replace("_L", "_R")] = tuple(bone.replace(".L", ".R") for bone in bones)
    return preset


def point_empties(scene: bpy.types.Scene) -> dict[str, str]:
    """Tracked point -> empty name in ``scene``; with several captures, the first by name."""
    found: dict[str, str] = {}
    for obj in sorted(scene.objects, key=lambda o: o.name):
        point = obj.get(POINT_KEY)
        if point is not None:
            found.setdefault(point, obj.name)
    return found


def preset_bindings(armature: bpy.types.Object, empties: dict[str, str]) -> list[tuple[str, str]]:
    """(bone, empty name) pairs of the Rigify preset that exist in this rig and scene."""
    bones = armature.pose.bones
    pairs = []
    for point, candidates in rigify_face_preset().items():
        bone = next((name for name in candidates if name in bones), None)
        if bone is not None and point in empties:
            pairs.append((bone, empties[point]))
    return pairs


def remove_capture_constraints(armature: bpy.types.Object) -> list[str]:
    """Delete every ``FA`` constraint of the armature; returns the bones that had one."""
    bones = []
    for pose_bone in armature.pose.bones:
        ours = [c for c in pose_bone.constraints if c.name.startswith(CONSTRAINT_PREFIX)]
        for constraint in ours:
            pose_bone.constraints.remove(constraint)
        if ours:
            bones.append(pose_bone.name)
    return bones


def add_binding(
    pose_bone: bpy.types.PoseBone, target: bpy.types.Object, mode: str, influence: float, gain: float
) -> bpy.types.Constraint:
    """One constraint making ``pose_bone`` follow ``target`` (see the module docstring)."""
    constraint = pose_bone.constraints.new(mode)
    constraint.name = CONSTRAINT_NAMES[mode]
    constraint.target = target
    constraint.influence = influence
    if mode == "DAMPED_TRACK":
        constraint.track_axis = "TRACK_Y"
        return constraint
    constraint.target_space = "LOCAL"
    constraint.owner_space = "POSE"
    if mode == "COPY_LOCATION":
        constraint.use_offset = True
        return constraint
    constraint.map_from = constraint.map_to = "LOCATION"
    constraint.mix_mode = "ADD"
    constraint.use_motion_extrapolate = True
    for axis in "xyz":
        setattr(constraint, f"from_min_{axis}", -OFFSET_RANGE_M)
        setattr(constraint, f"from_max_{axis}", OFFSET_RANGE_M)
        setattr(constraint, f"to_min_{axis}", -OFFSET_RANGE_M * gain)
        setattr(constraint, f"to_max_{axis}", OFFSET_RANGE_M * gain)
    return constraint


def bind_rig(armature: bpy.types.Object, bindings, objects) -> list[str]:
    """Replace the armature's ``FA`` constraints by one per binding row; returns problems
    (rows skipped, in words). ``objects`` is where targets are looked up by name."""
    remove_capture_constraints(armature)
    problems = []
    for row, binding in enumerate(bindings, start=1):
        pose_bone = armature.pose.bones.get(binding.bone)
        target = objects.get(binding.target)
        if pose_bone is None:
            problems.append(f"row {row}: {armature.name} has no bone {binding.bone!r}")
        elif target is None:
            problems.append(f"row {row}: no object {binding.target!r} in the scene")
        else:
            add_binding(pose_bone, target, binding.mode, binding.influence, binding.gain)
    return problems


def _rotation_curves(pose_bone, frames: np.ndarray, rotations: list[Quaternion], group: str, path) -> list[Curve]:
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        values = np.array([tuple(q) for q in rotations])
        # q and -q are the same rotation: keep neighbours on one side so curves do not flip.
        signs = np.sign(np.sum(values[1:] * values[:-1], axis=1))
        values[1:] *= np.cumprod(np.where(signs == 0, 1, signs))[:, None]
        return vector_curves(path("rotation_quaternion"), frames, values, group)
    if mode == "AXIS_ANGLE":
        values = np.array([(angle, *axis) for axis, angle in (q.to_axis_angle() for q in rotations)])
        return vector_curves(path("rotation_axis_angle"), frames, values, group)
    eulers, previous = [], None
    for quaternion in rotations:
        previous = quaternion.to_euler(mode, previous) if previous is not None else quaternion.to_euler(mode)
        eulers.append(tuple(previous))
    return vector_curves(path("rotation_euler"), frames, np.array(eulers), group)


def bake_rig(scene: bpy.types.Scene, armature: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> dict:
    """Key the bones that carry ``FA`` constraints over the scene's frame range (evaluated in
    ``depsgraph``, the scene's, with the bones' other constraints off), then remove the ``FA``
    constraints; the other constraints stay as they were. Returns {"bones": [names], "frames":
    count, "kept": ["bone: constraint", ...] (the rig's own constraints still active on them)}."""
    bones = [pb.name for pb in armature.pose.bones if any(c.name.startswith(CONSTRAINT_PREFIX) for c in pb.constraints)]
    if not bones:
        return {"bones": [], "frames": 0, "kept": []}
    frames = np.arange(scene.frame_start, scene.frame_end + 1, dtype=np.float64)
    kept = [
        (name, constraint)
        for name in bones
        for constraint in armature.pose.bones[name].constraints
        if not constraint.name.startswith(CONSTRAINT_PREFIX) and not constraint.mute
    ]
    for _, constraint in kept:
        constraint.mute = True
    try:
        samples = _local_transforms(scene, armature, bones, frames, depsgraph)
    finally:
        for _, constraint in kept:
            constraint.mute = False
    remove_capture_constraints(armature)
    curves = [curve for name in bones for curve in _bone_curves(armature.pose.bones[name], frames, samples[name])]
    animation_data = armature.animation_data
    if animation_data and animation_data.action:
        animate(armature, animation_data.action, curves)
    else:
        animate(armature, bpy.data.actions.new(f"{armature.name} capture"), curves)
    return {"bones": bones, "frames": len(frames), "kept": [f"{name}: {c.name}" for name, c in kept]}


def _local_transforms(scene, armature, bones: list[str], frames: np.ndarray, depsgraph) -> dict[str, list[tuple]]:
    """Per bone, per frame: the (location, rotation, scale) its channels need to reproduce the
    evaluated pose without constraints (visual keying)."""
    samples: dict[str, list[tuple]] = {name: [] for name in bones}
    saved_frame = scene.frame_current
    for frame in frames:
        scene.frame_set(int(frame))
        evaluated = armature.evaluated_get(depsgraph)
        for name in bones:
            pose_bone = evaluated.pose.bones[name]
            local = evaluated.convert_space(
                pose_bone=pose_bone, matrix=pose_bone.matrix, from_space="POSE", to_space="LOCAL"
            )
            samples[name].append(local.decompose())
    scene.frame_set(saved_frame)
    return samples


def _bone_curves(pose_bone, frames: np.ndarray, samples: list[tuple]) -> list[Curve]:
    escaped = bpy.utils.escape_identifier(pose_bone.name)

    def path(prop: str) -> str:
        return f'pose.bones["{escaped}"].{prop}'

    locations, rotations, scales = zip(*samples)
    return (
        vector_curves(path("location"), frames, np.array(locations), pose_bone.name)
        + _rotation_curves(pose_bone, frames, list(rotations), pose_bone.name, path)
        + vector_curves(path("scale"), frames, np.array(scales), pose_bone.name)
    )


def _settings(context):
    return context.scene.faceanything


class _NeedsArmature:
    """Rig operators act on the armature picked in the panel."""

    @classmethod
    def poll(cls, context):
        return context.scene is not None and _settings(context).rig_armature is not None


class FACEANYTHING_OT_bind_rig(_NeedsArmature, bpy.types.Operator):
    """Add constraints so the armature's bones follow the capture's empties (one per table row)"""

    bl_idname = "faceanything.bind_rig"
    bl_label = "Bind Rig"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = _settings(context)
        if not settings.rig_bindings:
            self.report({"ERROR"}, "The binding table is empty: add rows or press Rigify Preset")
            return {"CANCELLED"}
        problems = bind_rig(settings.rig_armature, settings.rig_bindings, context.scene.objects)
        bound = len(settings.rig_bindings) - len(problems)
        for problem in problems:
            self.report({"WARNING"}, problem)
        if bound == 0:
            self.report({"ERROR"}, "No bone was bound; fix the rows named above")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Bound {bound} bone(s) of {settings.rig_armature.name} to the capture")
        return {"FINISHED"}


class FACEANYTHING_OT_bake_rig(_NeedsArmature, bpy.types.Operator):
    """Key the bound bones on every frame of the scene and remove the capture constraints, so the rig works without
    the capture"""

    bl_idname = "faceanything.bake_rig"
    bl_label = "Bake Rig"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        armature = _settings(context).rig_armature
        result = bake_rig(context.scene, armature, context.evaluated_depsgraph_get())
        if not result["bones"]:
            self.report({"ERROR"}, f"{armature.name} has no capture constraints to bake; press Bind Rig first")
            return {"CANCELLED"}
        message = f"Baked {len(result['bones'])} bone(s) over {result['frames']} frames"
        if result["kept"]:
            message += f"; their {len(result['kept'])} own rig constraint(s) still act on top"
        self.report({"INFO"}, message)
        return {"FINISHED"}


class FACEANYTHING_OT_rig_preset(_NeedsArmature, bpy.types.Operator):
    """Fill the binding table with the Rigify face bones this armature has (lips, lids, brows, nose, chin)"""

    bl_idname = "faceanything.rig_preset"
    bl_label = "Rigify Preset"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = _settings(context)
        pairs = preset_bindings(settings.rig_armature, point_empties(context.scene))
        if not pairs:
            self.report({"ERROR"}, "No Rigify face bone of this armature matches a capture empty in the scene")
            return {"CANCELLED"}
        settings.rig_bindings.clear()
        for bone, target in pairs:
            row = settings.rig_bindings.add()
            row.bone, row.target = bone, target
        self.report({"INFO"}, f"{len(pairs)} binding(s) from the Rigify preset")
        return {"FINISHED"}


class FACEANYTHING_OT_rig_binding_add(bpy.types.Operator):
    """Add a row to the binding table"""

    bl_idname = "faceanything.rig_binding_add"
    bl_label = "Add Binding"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        _settings(context).rig_bindings.add()
        return {"FINISHED"}


class FACEANYTHING_OT_rig_binding_remove(bpy.types.Operator):
    """Remove this row from the binding table"""

    bl_idname = "faceanything.rig_binding_remove"
    bl_label = "Remove Binding"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(min=0)

    def execute(self, context):
        bindings = _settings(context).rig_bindings
        if self.index >= len(bindings):
            return {"CANCELLED"}
        bindings.remove(self.index)
        return {"FINISHED"}


def draw_rig_section(layout, context) -> None:
    """The rig part of the panel: armature, binding table, preset, bind and bake."""
    settings = _settings(context)
    layout.prop(settings, "rig_armature")
    armature = settings.rig_armature
    if armature is None:
        layout.label(text="Pick an armature to drive from the capture", icon="INFO")
        return
    row = layout.row(align=True)
    row.operator(FACEANYTHING_OT_rig_preset.bl_idname, icon="PRESET")
    row.operator(FACEANYTHING_OT_rig_binding_add.bl_idname, text="", icon="ADD")
    for index, binding in enumerate(settings.rig_bindings):
        row = layout.row(align=True)
        row.prop_search(binding, "bone", armature.pose, "bones", text="")
        row.prop(binding, "target", text="")
        row.prop(binding, "mode", text="")
        row.prop(binding, "influence", text="")
        if binding.mode == "TRANSFORM":
            row.prop(binding, "gain", text="")
        remove = row.operator(FACEANYTHING_OT_rig_binding_remove.bl_idname, text="", icon="X")
        remove.index = index
    row = layout.row(align=True)
    row.operator(FACEANYTHING_OT_bind_rig.bl_idname, icon="CONSTRAINT_BONE")
    row.operator(FACEANYTHING_OT_bake_rig.bl_idname, icon="REC")


classes = (
    FACEANYTHING_OT_bind_rig,
    FACEANYTHING_OT_bake_rig,
    FACEANYTHING_OT_rig_preset,
    FACEANYTHING_OT_rig_binding_add,
    FACEANYTHING_OT_rig_binding_remove,
)
