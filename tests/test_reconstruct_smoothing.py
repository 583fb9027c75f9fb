"""Temporal smoothing and gap filling on signals with known answers."""
import numpy as np
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

from model_runtime.reconstruct.fill import camera_positions, fill_gaps, head_offsets, positions_from_donors
from model_runtime.reconstruct.smoothing import POLYORDER, smooth_poses, smooth_series, window_frames


def test_window_follows_the_frame_rate():
    assert window_frames(25.0) == 5
    assert window_frames(60.0) == 13
    assert window_frames(5.0) == 5  # never shorter than a window that smooths anything


def test_smoothing_matches_savitzky_golay_and_keeps_cubic_motion_exactly():
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=(40, 6, 3))
    np.testing.assert_allclose(smooth_series(noisy, 25.0, "savgol"), savgol_filter(noisy, 5, POLYORDER, axis=0, mode="interp"), atol=1e-12)
    np.testing.assert_allclose(smooth_series(noisy, 60.0, "savgol"), savgol_filter(noisy, 13, POLYORDER, axis=0, mode="interp"), atol=1e-12)
    single = noisy.astype(np.float32)  # tracks are stored as float32: smoothed in float64, kept float32
    smoothed = smooth_series(single, 25.0, "savgol")
    assert smoothed.dtype == np.float32
    np.testing.assert_allclose(smoothed, savgol_filter(single.astype(np.float64), 5, POLYORDER, axis=0, mode="interp"), atol=1e-6)
    t = np.linspace(-1, 1, 50)[:, None]
    cubic = 0.3 * t**3 - t**2 + 0.5 * t + 2  # a fast, smooth motion: no lag, no overshoot
    np.testing.assert_allclose(smooth_series(cubic, 25.0, "savgol"), cubic, atol=1e-12)
    assert smooth_series(noisy, 25.0, None) is noisy
    np.testing.assert_array_equal(smooth_series(noisy[:3], 25.0, "savgol"), noisy[:3])  # too short to smooth


def test_smoothing_cuts_frame_to_frame_noise():
    rng = np.random.default_rng(1)
    noisy = rng.normal(size=(500, 3))
    second_difference = lambda x: np.linalg.norm(np.diff(x, n=2, axis=0), axis=1).mean()  # noqa: E731
    assert second_difference(smooth_series(noisy, 25.0, "savgol")) < 0.45 * second_difference(noisy)


def test_pose_smoothing_survives_quaternion_sign_flips():
    angles = np.linspace(0, 350, 30)
    rotations = Rotation.from_euler("y", angles[:, None], degrees=True)
    poses = np.tile(np.eye(4), (30, 1, 1))
    poses[:, :3, :3] = rotations.as_matrix()
    poses[:, :3, 3] = np.linspace(0, 1, 30)[:, None]
    smoothed = smooth_poses(poses, 25.0, "savgol")
    # A steady turn is a straight line in time: smoothing must leave it (nearly) as it was.
    error = Rotation.from_matrix(smoothed[:, :3, :3]) * rotations.inv()
    assert np.degrees(error.magnitude()).max() < 0.5
    np.testing.assert_allclose(smoothed[:, :3, 3], poses[:, :3, 3], atol=1e-12)


def test_gaps_are_interpolated_linearly_and_held_at_the_ends():
    offsets = np.zeros((8, 2, 3))
    offsets[:, 0, 0] = np.arange(8.0)
    offsets[:, 1, 1] = 5.0
    seen = np.ones((8, 2), bool)
    seen[[0, 3, 4, 5], 0] = False  # column 0: a gap at the start and one in the middle
    seen[:, 1] = False  # column 1: never seen, left alone
    scrambled = np.where(seen[..., None], offsets, -99.0)
    scrambled[:, 1] = offsets[:, 1]
    filled = fill_gaps(scrambled, seen)
    np.testing.assert_allclose(filled[:, 0, 0], [1, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(filled[:, 1], offsets[:, 1])


def test_offsets_round_trip_and_donors_share_their_offset():
    rng = np.random.default_rng(2)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = Rotation.random(5, random_state=3).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(5, 3))
    canonical = rng.normal(size=(4, 3))
    positions = rng.normal(size=(5, 4, 3))
    np.testing.assert_allclose(camera_positions(head_offsets(positions, poses, canonical), poses, canonical), positions, atol=1e-12)
    # Donors that all move by the same offset carry a point with them exactly.
    offset = rng.normal(size=(5, 1, 3))
    donor_canonical = canonical[None]  # (m=1, k=4, 3)
    donor_positions = camera_positions(np.broadcast_to(offset, (5, 4, 3)), poses, canonical)[:, None]
    target = np.array([[0.3, -0.2, 0.1]])
    moved = positions_from_donors(donor_positions, donor_canonical, np.full((1, 4), 0.25), target, poses[:, :3, :3])
    np.testing.assert_allclose(moved, camera_positions(offset, poses, target), atol=1e-12)
