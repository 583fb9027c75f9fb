"""ARKit expression curves in Blender: the control object a capture gets, a small generated
character whose ARKit-named shape keys (in several spellings) are driven from it, baking, and
head and eye bones. The curves are the real solver's, run in the runtime's environment."""
from __future__ import annotations

import subprocess
import textwrap
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from faceanything_blender import expressions
from faceanything_blender.scene import build_capture
from faceanything_blender.scene.build import remove_capture
from faceanything_blender.scene.expressions import ANGLE_CHANNELS, CONTROL_NAME
from faceanything_blender.runtime_paths import runtime_module
from tests.blender.conftest import REPO, RUNTIME_PYTHON, RecordingLayout, texts
from tests.blender.scene_fixtures import fresh_scene, make_capture  # noqa: F401 - fixture

FRAMES = 10
CHECK_INDEX = 6  # capture index looked at; the scene shows it at frame CHECK_INDEX + 1
SHAPE_KEYS = {  # shape key name on the character -> (ARKit name it must match, vertex it moves, offset)
    "jawOpen": ("jawOpen", 0, (0.0, 0.0, -0.02)),
    "eyeBlink_L": ("eyeBlinkLeft", 1, (0.0, 0.0, -0.01)),
    "EyeBlinkRight": ("eyeBlinkRight", 2, (0.0, 0.0, -0.01)),
    "Faceit_mouthSmile.L": ("mouthSmileLeft", 3, (0.01, 0.0, 0.01)),
    "mouthSmile_R": ("mouthSmileRight", 4, (-0.01, 0.0, 0.01)),
    "browInnerUp": ("browInnerUp", 5, (0.0, 0.0, 0.01)),
}
GAIN = 0.8

# Run by the runtime's Python: a head of the template making known expressions, turning and
# looking around, solved by the real solver (frame 0, at rest, as the neutral) into the
# synthetic capture's reconstruction folder.
SOLVE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from bench.sequences import rotation_matrix
    from model_runtime.expressions.arkit import INDEX
    from model_runtime.expressions.curves import curve_arrays
    from model_runtime.expressions.solver import TEMPLATE_FACING_CAMERA, SolverSettings, load_basis, solve_sequence
    from model_runtime.reconstruction_format import write_expression_curves
    from model_runtime.template import load_template

    frames = int(sys.argv[2])
    time = np.arange(frames) / (frames - 1)
    weights = np.zeros((frames, 52))
    weights[:, INDEX["jawOpen"]] = 0.7 * np.sin(np.pi * time) ** 2
    blink = np.clip(1 - np.abs(time - 6 / 9) / 0.2, 0, 1)  # closed at capture index 6, open at the end
    weights[:, INDEX["eyeBlinkLeft"]] = weights[:, INDEX["eyeBlinkRight"]] = blink
    weights[:, INDEX["mouthSmileLeft"]] = 0.6 * time
    weights[:, INDEX["browInnerUp"]] = 0.5 * np.sin(np.pi * time)
    template = load_template()
    shapes = template.vertices + np.einsum("ts,svd->tvd", weights, load_basis())
    for iris in (468, 473):  # the eyes turn toward the subject's left and up
        shapes[:, iris:iris + 5] += 0.012 * np.sin(np.radians(20 * time))[:, None, None] * np.array([1.0, 0.5, 0.0])
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for t in range(frames):  # the head turns toward the subject's right, chin down
        poses[t, :3, :3] = rotation_matrix(25 * time[t], 10 * time[t], 0.0) @ TEMPLATE_FACING_CAMERA
        poses[t, :3, 3] = (0.0, 0.0, 0.6)
    vertices = np.matmul(shapes, poses[:, :3, :3].transpose(0, 2, 1)) + poses[:, None, :3, 3]
    curves = solve_sequence(vertices, poses, template.vertices, settings=SolverSettings(neutral_frame=0))
    write_expression_curves(sys.argv[1], curve_arrays(curves))
""")


@pytest.fixture
def solved_capture(addon, fresh_scene, tmp_path):  # noqa: F811
    if not RUNTIME_PYTHON.exists():
        pytest.skip(f"{RUNTIME_PYTHON} is missing: run `make runtime` (the solver runs there)")
    capture_dir, _ = make_capture(tmp_path / "capture", frame_count=FRAMES)
    formats = runtime_module("reconstruction_format")
    folder = formats.reconstruction_dir(capture_dir)
    subprocess.run([str(RUNTIME_PYTHON), "-c", SOLVE_SCRIPT, str(folder), str(FRAMES)], cwd=REPO, check=True)
    build_capture(fresh_scene, capture_dir, footage="", animation="POINT_CACHE")
    return capture_dir, formats.load_expression_curves(folder)


def make_character(scene, name="Character") -> bpy.types.Object:
    """A small grid with a Basis key, the ARKit-named keys of SHAPE_KEYS and one unrelated key."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(0.02 * i, 0.0, 0.0) for i in range(8)], [], [])
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for key_name, (_, vertex, offset) in (*SHAPE_KEYS.items(), ("Unrelated", (None, 7, (0.0, 0.05, 0.0)))):
        block = obj.shape_key_add(name=key_name, from_mix=False)
        block.value = 0.0  # Object.shape_key_add makes keys at full value
        block.data[vertex].co = np.array(block.data[vertex].co) + offset
    bpy.context.view_layer.objects.active = obj
    return obj


def evaluated_vertices(scene, obj, frame: int) -> np.ndarray:
    scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return np.array([v.co for v in evaluated.data.vertices])


def expected_vertices(obj, weights_row: np.ndarray, names: list[str], gain: float) -> np.ndarray:
    rest = np.array([point.co for point in obj.data.shape_keys.key_blocks["Basis"].data])
    for _, (arkit, vertex, offset) in SHAPE_KEYS.items():
        rest[vertex] += gain * weights_row[names.index(arkit)] * np.array(offset)
    return rest


def test_a_capture_gets_a_control_object_with_the_curves(solved_capture, fresh_scene):  # noqa: F811
    _, track = solved_capture
    control = bpy.data.objects[CONTROL_NAME]
    assert control in set(fresh_scene.objects) and control.parent.name.startswith("FA_")
    fcurves = {fc.data_path: fc for fc in control.animation_data.action.layers[0].strips[0]
               .channelbag(control.animation_data.action_slot).fcurves}
    assert len(fcurves) == 52 + len(ANGLE_CHANNELS)
    for t in range(FRAMES):  # capture index t shows at scene frame t + 1
        jaw = track.weights[t, track.names.index("jawOpen")]
        assert fcurves['["jawOpen"]'].evaluate(t + 1) == pytest.approx(jaw, abs=1e-6)
        assert fcurves['["headYaw"]'].evaluate(t + 1) == pytest.approx(track.head_rotation[t, 0], abs=1e-6)
        assert fcurves['["leftEyeYaw"]'].evaluate(t + 1) == pytest.approx(track.eye_gaze[t, 0, 0], abs=1e-6)
    assert track.weights[:, track.names.index("jawOpen")].max() > 0.4  # the solver saw the jaw open


def test_drive_shape_keys_moves_the_character_by_the_solver_weights(solved_capture, fresh_scene):  # noqa: F811
    _, track = solved_capture
    character = make_character(fresh_scene)
    assert bpy.ops.faceanything.drive_shape_keys(gain=GAIN) == {"FINISHED"}
    keys = character.data.shape_keys
    driven = {fc.data_path for fc in keys.animation_data.drivers}
    assert driven == {f'key_blocks["{name}"].value' for name in SHAPE_KEYS}  # "Unrelated" is left alone
    row = track.weights[CHECK_INDEX]
    assert row[track.names.index("jawOpen")] > 0.3 and row[track.names.index("eyeBlinkLeft")] > 0.3
    actual = evaluated_vertices(fresh_scene, character, CHECK_INDEX + 1)
    np.testing.assert_allclose(actual, expected_vertices(character, row, track.names, GAIN), atol=1e-6)
    character[expressions.GAIN_PROPERTY] = 0.25  # the gain stays editable
    character.update_tag()  # what the panel does when the property is edited there
    actual = evaluated_vertices(fresh_scene, character, CHECK_INDEX + 1)
    np.testing.assert_allclose(actual, expected_vertices(character, row, track.names, 0.25), atol=1e-6)


def test_the_match_report_names_what_was_found_and_what_was_not(solved_capture, fresh_scene):  # noqa: F811
    character = make_character(fresh_scene)
    result = expressions.drive_shape_keys(character, bpy.data.objects[CONTROL_NAME], 1.0)
    assert result["matched"] == {name: arkit for name, (arkit, _, _) in SHAPE_KEYS.items()}
    assert len(result["missing"]) == 52 - len(SHAPE_KEYS) and "tongueOut" in result["missing"]
    bare = bpy.data.objects.new("Bare", bpy.data.meshes.new("Bare"))
    fresh_scene.collection.objects.link(bare)
    bpy.context.view_layer.objects.active = bare
    with pytest.raises(RuntimeError, match="Bare has no shape key named like an ARKit shape"):
        bpy.ops.faceanything.drive_shape_keys()
    assert expressions.GAIN_PROPERTY not in bare  # nothing was done to it


def test_baked_shape_keys_keep_the_motion_without_the_capture(solved_capture, fresh_scene):  # noqa: F811
    capture_dir, track = solved_capture
    character = make_character(fresh_scene)
    bpy.ops.faceanything.drive_shape_keys(gain=GAIN)
    before = {f: evaluated_vertices(fresh_scene, character, f) for f in range(1, FRAMES + 1)}
    assert bpy.ops.faceanything.bake_expressions() == {"FINISHED"}
    keys = character.data.shape_keys
    assert not keys.animation_data.drivers
    remove_capture(str(capture_dir.resolve()))
    assert CONTROL_NAME not in bpy.data.objects
    for frame, vertices in before.items():
        np.testing.assert_allclose(evaluated_vertices(fresh_scene, character, frame), vertices, atol=1e-6)


def test_head_and_eye_bones_turn_with_the_capture_and_bake(solved_capture, fresh_scene):  # noqa: F811
    _, track = solved_capture
    data = bpy.data.armatures.new("Character rig")
    armature = bpy.data.objects.new("Character rig", data)
    fresh_scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail in (("head", (0, 0, 0), (0, 0, 0.1)), ("eye.L", (0.03, -0.08, 0.05), (0.03, -0.1, 0.05)),
                             ("eye.R", (-0.03, -0.08, 0.05), (-0.03, -0.1, 0.05))):
        bone = data.edit_bones.new(name)
        bone.head, bone.tail, bone.roll = head, tail, 0.0
    bpy.ops.object.mode_set(mode="OBJECT")
    assert expressions.bind_bones(armature, bpy.data.objects[CONTROL_NAME], "head", "eye.L", "eye.R") == []
    problems = expressions.bind_bones(armature, bpy.data.objects[CONTROL_NAME], "neck")
    assert problems == ["Character rig has no bone 'neck'"]

    def axes(frame):
        fresh_scene.frame_set(frame)
        pose = armature.evaluated_get(bpy.context.evaluated_depsgraph_get()).pose
        return {name: np.array(pose.bones[name].matrix)[:3, :3] for name in ("head", "eye.L", "eye.R")}

    last = axes(FRAMES)
    yaw, pitch = track.head_rotation[-1, :2]
    assert yaw > np.radians(15) and pitch > np.radians(5)
    face_forward = last["head"][:, 2]  # the head bone's Z points forward out of the face
    assert face_forward[0] < -0.3  # the face turned toward the character's right (-X)
    assert face_forward[2] < -0.1  # and the chin went down
    np.testing.assert_allclose(np.arcsin(-face_forward[0] / np.hypot(face_forward[0], face_forward[1])), yaw, atol=0.02)
    gaze_yaw = track.eye_gaze[-1, 0, 0]
    assert gaze_yaw > np.radians(10)
    eye_forward = last["eye.L"][:, 1]  # an eye bone points forward out of the eye
    assert eye_forward[0] > 0.15 and eye_forward[2] > 0.05  # toward the character's left, and up
    bpy.context.view_layer.objects.active = armature
    before = {f: axes(f) for f in (1, CHECK_INDEX + 1, FRAMES)}
    assert bpy.ops.faceanything.bake_expressions() == {"FINISHED"}
    assert not armature.animation_data.drivers
    for frame, pose in before.items():
        for name, matrix in axes(frame).items():
            np.testing.assert_allclose(matrix, pose[name], atol=1e-5)


def test_the_panel_section_offers_the_operators_once_there_are_curves(solved_capture, fresh_scene):  # noqa: F811
    calls = []
    expressions.draw_expressions_section(RecordingLayout(calls), SimpleNamespace(scene=fresh_scene))
    assert [args["operator"] for name, args in calls if name == "operator"] == [
        "faceanything.drive_shape_keys", "faceanything.bind_expression_bones", "faceanything.bake_expressions"]
    assert CONTROL_NAME in texts(calls)
    empty_scene = bpy.data.scenes.new("NoCurves")
    calls = []
    expressions.draw_expressions_section(RecordingLayout(calls), SimpleNamespace(scene=empty_scene))
    bpy.data.scenes.remove(empty_scene)
    assert "Capture a clip" in texts(calls) and not any(name == "operator" for name, _ in calls)
