"""The expression solver recovers known ARKit weights, head angles and gaze from meshes made
from the basis itself, with another identity, rigid head motion and noise."""
import numpy as np
import pytest

from bench.sequences import rotation_matrix
from model_runtime.expressions.arkit import ARKIT_NAMES, EXPRESSIVE, INDEX
from model_runtime.expressions.solver import (EYEBALL_RADIUS_M, EYES, GAZE_SHAPES, LID_SHAPES,
                                              TEMPLATE_FACING_CAMERA, ExpressionSolver, SolverSettings, head_angles,
                                              lid_weights, load_basis, load_pose_bias, pose_terms, solve_sequence,
                                              swings_enough)
from model_runtime.expressions.surface import closest_on_surface, interpolate
from model_runtime.reconstruct.mesh import template_mesh
from model_runtime.template import load_template

FRAMES = 90
NOISE_M = 0.0002
# The clips are made from the geometric basis and solved with it: its shapes are the exact skin
# motion and distinct enough to be recovered exactly. The observed basis (measured, noisier) is
# scored on rendered clips by bench/expression_curves.py.
BASIS = "geometric"


def synthetic_weights(rng, frames=FRAMES) -> np.ndarray:
    """Each expressive shape in a few bumps, at rest most of the time (as in real footage)."""
    weights = np.zeros((frames, len(ARKIT_NAMES)))
    time = np.arange(frames)
    for name in EXPRESSIVE:
        centre, width = rng.uniform(5, frames - 5), rng.uniform(8, 20)
        weights[:, INDEX[name]] = rng.uniform(0.5, 0.9) * np.clip(1 - np.abs(time - centre) / width, 0, None)
    return weights


def posed_clip(weights: np.ndarray, mesh_canonical: np.ndarray, rng, angles_deg=None):
    """Camera-space vertices of a head of another identity making `weights`, and its poses."""
    template = load_template()
    triangle, barycentric, _ = closest_on_surface(mesh_canonical, template.vertices, template.triangles)
    basis = interpolate(load_basis(BASIS), template.triangles, triangle, barycentric)
    identity = mesh_canonical * np.array([1.06, 0.95, 1.1]) + 0.001 * np.sin(40 * mesh_canonical)
    shapes = identity[None] + np.einsum("ts,svd->tvd", weights, basis)
    if angles_deg is None:
        count = len(weights)
        angles_deg = np.stack([20 * np.sin(np.linspace(0, 3, count)), 8 * np.cos(np.linspace(0, 2, count)),
                               np.linspace(-5, 5, count)], axis=1)
    poses = np.tile(np.eye(4), (len(weights), 1, 1))
    for t, angles in enumerate(angles_deg):
        poses[t, :3, :3] = rotation_matrix(*angles) @ TEMPLATE_FACING_CAMERA
        poses[t, :3, 3] = [0.02 * np.sin(t / 9), 0.01, 0.6]
    vertices = np.matmul(shapes, poses[:, :3, :3].transpose(0, 2, 1)) + poses[:, None, :3, 3]
    return vertices + rng.normal(0, NOISE_M, vertices.shape), poses


@pytest.fixture(scope="module")
def mesh():
    return template_mesh(load_template(), "high")


@pytest.fixture(scope="module")
def solver(mesh):
    return ExpressionSolver(mesh.canonical, SolverSettings(basis=BASIS))


def test_recovers_known_weights_with_an_estimated_neutral(mesh, solver):
    rng = np.random.default_rng(3)
    truth = synthetic_weights(rng)
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    assert curves.weights.shape == (FRAMES, 52) and curves.neutral_frame == -1
    assert curves.weights.min() >= 0 and curves.weights.max() <= 1
    for name in EXPRESSIVE:
        column = INDEX[name]
        r = np.corrcoef(truth[:, column], curves.weights[:, column])[0, 1]
        assert r > 0.85, f"{name}: r = {r:.3f}"
        assert np.abs(truth[:, column] - curves.weights[:, column]).mean() < 0.1, name
    others = [INDEX[n] for n in ARKIT_NAMES if n not in EXPRESSIVE and n not in GAZE_SHAPES]
    assert np.abs(curves.weights[:, others]).mean() < 0.05


def test_a_chosen_neutral_frame_is_used(mesh, solver):
    rng = np.random.default_rng(4)
    truth = np.zeros((30, 52))
    truth[:, INDEX["jawOpen"]] = 0.3  # the mouth is never closed: only a chosen neutral knows where 0 is
    truth[10, INDEX["jawOpen"]] = 0.0
    truth[20:, INDEX["jawOpen"]] = 0.8
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    settings = SolverSettings(neutral_frame=10, temporal=0.0, basis=BASIS)
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=ExpressionSolver(mesh.canonical, settings))
    jaw = curves.weights[:, INDEX["jawOpen"]]
    assert curves.neutral_frame == 10
    assert jaw[10] < 0.05
    assert abs(np.median(jaw[:10]) - 0.3) < 0.08 and abs(np.median(jaw[22:]) - 0.8) < 0.08


def test_an_expression_held_through_most_of_the_clip_is_not_taken_for_rest(mesh, solver):
    rng = np.random.default_rng(9)
    truth = np.zeros((60, 52))
    truth[18:, INDEX["mouthSmileLeft"]] = truth[18:, INDEX["mouthSmileRight"]] = 0.8  # smiling from frame 18 on
    truth[30:40, INDEX["jawOpen"]] = 0.4
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    smile = curves.weights[:, INDEX["mouthSmileLeft"]]
    assert smile[:15].max() < 0.1 and abs(np.median(smile[20:]) - 0.8) < 0.1


def test_head_angles_follow_the_pose(mesh, solver):
    rng = np.random.default_rng(5)
    angles = np.stack([np.linspace(-30, 30, 12), np.linspace(10, -10, 12), np.linspace(-8, 8, 12)], axis=1)
    vertices, poses = posed_clip(np.zeros((12, 52)), mesh.canonical, rng, angles)
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    np.testing.assert_allclose(np.degrees(curves.head_rotation), angles, atol=1e-6)
    np.testing.assert_allclose(curves.head_translation, poses[:, :3, 3])


def test_gaze_from_the_irises(mesh, solver):
    rng = np.random.default_rng(6)
    vertices, poses = posed_clip(np.zeros((20, 52)), mesh.canonical, rng)
    vertices = np.array(vertices)
    yaw = np.radians(np.linspace(-25, 25, 20))  # toward the subject's left
    pitch = np.radians(np.linspace(15, -15, 20))  # up, then down
    for iris, _, _ in EYES.values():
        ring = np.arange(iris, iris + 5)  # the iris centre and its four ring points move together
        shift = EYEBALL_RADIUS_M * np.stack([np.sin(yaw), np.sin(pitch), np.zeros(20)], axis=1)
        rotation = poses[:, :3, :3]
        vertices[:, ring] += np.einsum("tij,tj->ti", rotation, shift)[:, None, :]
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    for eye in range(2):
        assert np.corrcoef(curves.eye_gaze[:, eye, 0], yaw)[0, 1] > 0.99
        assert np.corrcoef(curves.eye_gaze[:, eye, 1], pitch)[0, 1] > 0.99
    assert np.abs(curves.eye_gaze[:, :, 0] - yaw[:, None]).max() < np.radians(4)
    first = curves.weights[0]  # subject's right and up: the right eye looks out
    last = curves.weights[-1]  # subject's left and down: the left eye looks out, the right eye in
    assert last[INDEX["eyeLookOutLeft"]] > 0.5 and last[INDEX["eyeLookInRight"]] > 0.5
    assert last[INDEX["eyeLookDownLeft"]] > 0.3 and last[INDEX["eyeLookUpLeft"]] == 0
    assert first[INDEX["eyeLookUpRight"]] > 0.3 and first[INDEX["eyeLookOutRight"]] > 0.5


def test_a_widening_counts_only_beyond_the_apertures_own_spread():
    """Aperture noise as large as a small eyeWide (the capture's lids wander as the head turns)
    reads no eyeWide; a widening beyond it reads its excess; blinks keep their whole depth."""
    rng = np.random.default_rng(16)
    change = rng.normal(0.0, 0.03, (120, 2))
    change[60:70] += 0.2  # a widening of both eyes
    change[90:94] = -0.35  # a blink
    response = np.array([-0.35, 0.25, -0.35, 0.25])  # LID_SHAPES: blink, wide per eye
    weights = lid_weights(change, response)
    wide = weights[:, [LID_SHAPES.index("eyeWideLeft"), LID_SHAPES.index("eyeWideRight")]]
    outside = np.r_[0:60, 70:120]
    assert wide[outside].mean() < 0.02  # read from 0 it would be about 0.05, peaks of 0.3
    assert 0.5 < wide[60:70].mean() < 0.8  # (0.2 - about 0.03) / 0.25
    assert np.allclose(weights[90:94, LID_SHAPES.index("eyeBlinkLeft")], 1.0)


def test_blinks_are_found_and_none_invented(mesh, solver):
    rng = np.random.default_rng(7)
    truth = np.zeros((80, 52))
    time = np.arange(80)
    for centre in (15, 42, 66):
        blink = np.clip(1 - np.abs(time - centre) / 3.0, 0, None)
        truth[:, INDEX["eyeBlinkLeft"]] += blink
        truth[:, INDEX["eyeBlinkRight"]] += blink
    truth[:, INDEX["jawOpen"]] = 0.3 * np.clip(np.sin(time / 4), 0, None)
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    curves = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        closed = curves.weights[:, INDEX[name]] > 0.5
        starts = np.nonzero(np.diff(closed.astype(int)) == 1)[0] + 1
        assert len(starts) == 3, f"{name}: blinks found at {starts}"
        assert all(abs(s - c) <= 3 for s, c in zip(starts, (15, 42, 66)))


def test_a_neutral_frame_outside_the_clip_is_refused(mesh):
    solver = ExpressionSolver(mesh.canonical, SolverSettings(neutral_frame=50, basis=BASIS))
    rng = np.random.default_rng(8)
    vertices, poses = posed_clip(np.zeros((5, 52)), mesh.canonical, rng)
    with pytest.raises(ValueError, match="neutral frame 50"):
        solve_sequence(vertices, poses, mesh.canonical, solver=solver)


def test_small_head_pose_errors_are_not_read_as_expressions(mesh, solver):
    rng = np.random.default_rng(10)
    truth = synthetic_weights(rng)
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    wrong = poses.copy()  # the pose the solver is given is off by up to 1.5 degrees and 1.5 mm
    for t in range(len(wrong)):
        wrong[t, :3, :3] = wrong[t, :3, :3] @ rotation_matrix(*rng.uniform(-1.5, 1.5, 3))
        wrong[t, :3, 3] += rng.uniform(-0.0015, 0.0015, 3)
    curves = solve_sequence(vertices, wrong, mesh.canonical, solver=solver)
    others = [INDEX[n] for n in ARKIT_NAMES if n not in EXPRESSIVE and n not in GAZE_SHAPES]
    assert np.abs(curves.weights[:, others]).mean() < 0.05
    for name in ("jawOpen", "mouthSmileLeft", "browInnerUp", "mouthPucker"):
        r = np.corrcoef(truth[:, INDEX[name]], curves.weights[:, INDEX[name]])[0, 1]
        assert r > 0.85, f"{name}: r = {r:.3f}"


def test_the_captures_pose_bias_is_not_read_as_expressions():
    """A face at rest bent as the capture bends it when the head turns (the measured pose bias),
    solved with the observed basis: every curve stays near rest."""
    template = load_template()
    rng = np.random.default_rng(11)
    count = 40
    angles = np.stack([25 * np.sin(np.linspace(0, 6, count)), 12 * np.sin(np.linspace(0, 9, count)),
                       np.zeros(count)], axis=1)
    _, poses = posed_clip(np.zeros((count, 52)), template.vertices, rng, angles)
    bent = template.vertices + np.einsum("tk,kvd->tvd", pose_terms(head_angles(poses)), load_pose_bias())
    vertices = np.matmul(bent, poses[:, :3, :3].transpose(0, 2, 1)) + poses[:, None, :3, 3]
    curves = solve_sequence(vertices, poses, template.vertices)
    fitted = [INDEX[n] for n in ARKIT_NAMES if n not in GAZE_SHAPES]
    assert curves.weights[:, fitted].max() < 0.05


def test_a_faces_own_pose_bias_is_measured_on_its_rest_frames_or_on_a_swinging_clip(mesh):
    """A capture that bends this face like a smile and a brow raise as the head turns (not the
    average face's measured bias): taken out when the clip starts with frames at rest while the
    head turns (a blink among them), and nearly as well from the clip alone, whose head swings
    back and forth (`swings_enough`)."""
    rng = np.random.default_rng(13)
    lead = 40
    phase = np.arange(lead) / lead
    rest_angles = np.stack([20 * np.sin(2 * np.pi * phase), 10 * np.sin(4 * np.pi * phase), np.zeros(lead)], axis=1)
    performance = synthetic_weights(rng)
    truth = np.concatenate([np.zeros((lead, 52)), performance])
    truth[18:23, INDEX["eyeBlinkLeft"]] = truth[18:23, INDEX["eyeBlinkRight"]] = [0.5, 1, 1, 1, 0.5]
    count = len(truth)
    angles = np.concatenate([rest_angles, np.stack([20 * np.sin(np.linspace(0, 3, count - lead)),
                                                    8 * np.cos(np.linspace(0, 2, count - lead)) - 8,
                                                    np.zeros(count - lead)], axis=1)])
    vertices, poses = posed_clip(truth, mesh.canonical, rng, angles)
    template = load_template()
    triangle, barycentric, _ = closest_on_surface(mesh.canonical, template.vertices, template.triangles)
    basis = interpolate(load_basis(BASIS), template.triangles, triangle, barycentric)
    yaw, pitch = np.radians(angles[:, 0]), np.radians(angles[:, 1])
    bend = (2.0 * yaw[:, None, None] * basis[INDEX["mouthSmileLeft"]]
            + 2.5 * pitch[:, None, None] * basis[INDEX["browInnerUp"]])  # per radian, head frame
    bent = vertices + np.einsum("tij,tvj->tvi", poses[:, :3, :3], bend)
    scored = slice(lead, None)

    def solve(clip, rest_frames):
        settings = SolverSettings(basis=BASIS, rest_frames=rest_frames)
        return solve_sequence(clip, poses, mesh.canonical, solver=ExpressionSolver(mesh.canonical, settings))

    def error(curves, name):
        return np.abs(curves.weights[scored, INDEX[name]] - truth[scored, INDEX[name]]).mean()

    unbent, alone, calibrated = solve(vertices, tuple(range(lead))), solve(bent, None), solve(bent, tuple(range(lead)))
    assert swings_enough(pose_terms(np.radians(angles))[:, :2])
    assert error(calibrated, "mouthSmileLeft") < 0.04 and error(calibrated, "browInnerUp") < 0.04
    assert error(alone, "mouthSmileLeft") < 0.08 and error(alone, "browInnerUp") < 0.08
    for name in EXPRESSIVE:  # as good as the same face without the bend, calibrated alike
        assert error(calibrated, name) < error(unbent, name) + 0.02, name
    assert calibrated.weights[:lead, [INDEX["mouthSmileLeft"], INDEX["browInnerUp"]]].max() < 0.1


def test_a_smile_that_comes_with_a_single_head_turn_is_not_taken_for_the_faces_bend(mesh, solver):
    """Without rest frames, a head that turns once cannot tell a smile held while it turns from
    the capture bending the face: the smile is read whole."""
    rng = np.random.default_rng(15)
    truth = np.zeros((FRAMES, 52))
    truth[45:, INDEX["mouthSmileLeft"]] = truth[45:, INDEX["mouthSmileRight"]] = 0.6
    angles = np.stack([np.linspace(-20, 20, FRAMES), np.zeros(FRAMES), np.zeros(FRAMES)], axis=1)
    vertices, poses = posed_clip(truth, mesh.canonical, rng, angles)
    assert not swings_enough(pose_terms(np.radians(angles))[:, :2])
    smile = solve_sequence(vertices, poses, mesh.canonical, solver=solver).weights[:, INDEX["mouthSmileLeft"]]
    assert np.abs(smile - truth[:, INDEX["mouthSmileLeft"]]).mean() < 0.05


def test_rest_frames_outside_the_clip_are_refused(mesh):
    rng = np.random.default_rng(14)
    vertices, poses = posed_clip(np.zeros((5, 52)), mesh.canonical, rng)
    for frames in ((3, 4, 5), (0, 1)):
        settings = SolverSettings(basis=BASIS, rest_frames=frames)
        with pytest.raises(ValueError, match="rest frames"):
            solve_sequence(vertices, poses, mesh.canonical, solver=ExpressionSolver(mesh.canonical, settings))


def test_a_long_clip_is_fitted_in_windows_with_the_same_weights(mesh, solver):
    rng = np.random.default_rng(12)
    truth = np.concatenate([synthetic_weights(rng) for _ in range(4)])  # 360 frames: two windows of 256
    vertices, poses = posed_clip(truth, mesh.canonical, rng)
    windowed = solve_sequence(vertices, poses, mesh.canonical, solver=solver)
    whole = solve_sequence(vertices, poses, mesh.canonical,
                           settings=SolverSettings(basis=BASIS, window=len(truth)))
    assert np.abs(windowed.weights - whole.weights).max() < 0.01
    with pytest.raises(ValueError, match="overlap"):
        solve_sequence(vertices, poses, mesh.canonical,
                       settings=SolverSettings(basis=BASIS, window=8, window_overlap=8))


class MadeWhenRead:
    """A clip whose vertices are made when read (as curves.VerticesOnDisk reads them from disk):
    the face at rest, opening its jaw now and then, head still."""

    def __init__(self, mesh_canonical, frame_count):
        template = load_template()
        triangle, barycentric, _ = closest_on_surface(mesh_canonical, template.vertices, template.triangles)
        self.jaw = interpolate(load_basis(BASIS)[INDEX["jawOpen"]], template.triangles, triangle, barycentric)
        self.rest = mesh_canonical @ TEMPLATE_FACING_CAMERA.T + [0.0, 0.0, 0.6]
        self.jaw = self.jaw @ TEMPLATE_FACING_CAMERA.T
        self.poses = np.tile(np.eye(4), (frame_count, 1, 1))
        self.poses[:, :3, :3], self.poses[:, 2, 3] = TEMPLATE_FACING_CAMERA, 0.6

    def __getitem__(self, key):
        frames, columns = key
        opening = jaw_opening(np.arange(len(self.poses))[frames])
        return self.rest[columns] + opening[:, None, None] * self.jaw[columns]


def jaw_opening(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.sin(frames / 5.0) - 0.6, 0.0, None) / 0.4


def test_memory_does_not_grow_with_the_clip(mesh, solver):
    """The solve keeps a few numbers per frame, not the mesh: far below the 0.16 MiB per frame
    that holding the fitted vertices of the whole clip took."""
    import tracemalloc

    peaks = []
    for frame_count in (1000, 2000):
        clip = MadeWhenRead(mesh.canonical, frame_count)
        tracemalloc.start()
        curves = solve_sequence(clip, clip.poses, mesh.canonical, solver=solver)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert np.corrcoef(curves.weights[:, INDEX["jawOpen"]], jaw_opening(np.arange(frame_count)))[0, 1] > 0.95
    per_frame_mib = (peaks[1] - peaks[0]) / 1000 / 2 ** 20
    assert per_frame_mib < 0.01, f"{per_frame_mib:.3f} MiB per frame"
