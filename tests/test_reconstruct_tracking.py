"""Canonical look-up and rigid pose on frames with exactly known geometry."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from model_runtime.reconstruct import ReconstructOptions
from model_runtime.reconstruct.mesh import template_mesh
from model_runtime.reconstruct.pose import fit_head_pose, fit_head_poses, fit_rigid, interpolate_poses
from model_runtime.reconstruct.tracking import CanonicalLookup
from tests.fixtures.synthetic import SyntheticClip

RADIUS = ReconstructOptions().radius


@pytest.fixture(scope="module")
def clip():
    return SyntheticClip()


def projected(clip, points):
    homogeneous = points @ clip.intrinsics.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


@pytest.mark.parametrize("frame", [0, 7, 19])
@pytest.mark.parametrize("density", ["low", "medium"])
def test_lookup_finds_mesh_points_at_their_true_positions(clip, frame, density):
    # "low" queries are the mesh's own vertices, where the maps have creases.
    queries = template_mesh(clip.template, density).canonical
    track = CanonicalLookup(clip.render(frame)).track(queries, RADIUS)
    truth = clip.true_positions(queries, frame)
    assert track.seen.all()
    error = np.linalg.norm(track.positions - truth, axis=1)
    assert error.mean() < 2e-5 and error.max() < 3e-4  # metres
    pixel_error = np.linalg.norm(track.pixels - projected(clip, truth), axis=1)
    assert pixel_error.mean() < 0.02 and pixel_error.max() < 0.2
    assert ((track.confidence > 0) & (track.confidence <= 1)).all()


def test_guesses_give_the_same_answer_as_the_tree_even_when_wrong(clip):
    queries = template_mesh(clip.template, "medium").canonical
    lookup = CanonicalLookup(clip.render(5))
    plain = lookup.track(queries, RADIUS)
    good_guess = lookup.track(queries, RADIUS, guess=plain.pixels + 0.8)
    rng = np.random.default_rng(1)
    bad_guess = lookup.track(queries, RADIUS, guess=plain.pixels + rng.uniform(-30, 30, plain.pixels.shape))
    no_guess = lookup.track(queries, RADIUS, guess=np.full_like(plain.pixels, np.nan))
    for other in (good_guess, bad_guess, no_guess):
        np.testing.assert_array_equal(other.seen, plain.seen)
        assert np.abs(other.positions - plain.positions).max() < 5e-4
        assert np.abs(other.pixels - plain.pixels).max() < 0.4


def test_points_off_the_visible_surface_are_not_seen(clip):
    lip = clip.template.vertices[[clip.template.landmarks["lower_lip_outer"]]]
    off_surface = np.array([[0.0, 0.0, 0.2], [0.3, 0.0, 0.0]])  # in front of the face; beside it
    lookup = CanonicalLookup(clip.render(0))
    assert not lookup.track(off_surface, RADIUS).seen.any()
    assert lookup.track(lip, RADIUS).seen.all()
    hand_over_mouth = SyntheticClip(occluded=(0,)).render(0)
    assert not CanonicalLookup(hand_over_mouth).track(lip, RADIUS).seen.any()


def random_pose(rng):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=rng.integers(1 << 30)).as_matrix()
    pose[:3, 3] = rng.normal(0, 0.1, 3) + [0, 0, 0.5]
    return pose


def test_fit_rigid_recovers_a_rotation_and_translation_exactly():
    rng = np.random.default_rng(0)
    source = rng.normal(0, 0.05, (40, 3))
    pose = random_pose(rng)
    target = source @ pose[:3, :3].T + pose[:3, 3]
    np.testing.assert_allclose(fit_rigid(source, target, rng.uniform(0.2, 1, 40)), pose, atol=1e-10)


def test_head_pose_ignores_moving_points():
    rng = np.random.default_rng(3)
    canonical = rng.normal(0, 0.04, (300, 3))
    pose = random_pose(rng)
    camera = canonical @ pose[:3, :3].T + pose[:3, 3] + rng.normal(0, 2e-4, (300, 3))
    camera[:90] += rng.normal(0, 0.01, (90, 3)) + [0.0, 0.01, 0.0]  # an open jaw: 30% of the points moved
    fitted = fit_head_pose(canonical, camera, np.ones(300))
    assert np.abs(fitted[:3, :3] - pose[:3, :3]).max() < 3e-3
    assert np.abs(fitted[:3, 3] - pose[:3, 3]).max() < 3e-4
    assert fit_head_pose(canonical[:5], camera[:5], np.ones(5)) is None


def test_poses_fitted_together_match_poses_fitted_one_by_one():
    rng = np.random.default_rng(4)
    canonical = rng.normal(0, 0.04, (200, 3))
    cameras, weights = [], []
    for moved in (0, 10, 40, 80):  # from a still face to a wide-open jaw: each frame drops its own outliers
        pose = random_pose(rng)
        camera = canonical @ pose[:3, :3].T + pose[:3, 3] + rng.normal(0, 2e-4, (200, 3))
        camera[:moved] += [0.0, 0.012, 0.0]
        cameras.append(camera)
        weights.append(np.where(rng.uniform(size=200) < 0.1, 0.0, rng.uniform(0.2, 1, 200)))
    together = fit_head_poses(canonical, np.stack(cameras), np.stack(weights))
    for pose, camera, weight in zip(together, cameras, weights):
        np.testing.assert_allclose(pose, fit_head_pose(canonical, camera, weight), atol=1e-12)


def test_interpolated_poses_slerp_between_known_frames_and_hold_at_the_ends():
    first, last = np.eye(4), np.eye(4)
    last[:3, :3] = Rotation.from_euler("y", 40, degrees=True).as_matrix()
    last[:3, 3] = [0.1, 0.0, 0.6]
    poses = np.tile(np.eye(4), (7, 1, 1))
    poses[1], poses[5] = first, last
    known = np.zeros(7, bool)
    known[[1, 5]] = True
    filled = interpolate_poses(poses, known)
    np.testing.assert_allclose(filled[0], first)
    np.testing.assert_allclose(filled[6], last)
    np.testing.assert_allclose(filled[3, :3, :3], Rotation.from_euler("y", 20, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(filled[3, :3, 3], [0.05, 0.0, 0.3])
