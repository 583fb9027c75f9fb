"""The benchmark's metrics on cases whose answers are known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from bench import metrics


def test_depth_errors_of_a_constant_offset_and_of_a_scaled_prediction():
    truth = np.array([[1.0, 2.0], [0.0, 4.0]])  # one pixel has no truth
    offset = metrics.depth_errors(truth + 0.01, truth, median_scaling=False)
    assert offset.pixels == 3
    assert offset.rmse_mm == pytest.approx(10.0)
    assert offset.abs_rel == pytest.approx(np.mean([0.01 / 1, 0.01 / 2, 0.01 / 4]))

    doubled = np.where(truth > 0, truth * 2, 0)
    raw = metrics.depth_errors(doubled, truth, median_scaling=False)
    assert raw.abs_rel == pytest.approx(1.0)
    assert raw.rmse_mm == pytest.approx(np.sqrt(np.mean([1.0, 4.0, 16.0])) * 1000)
    scaled = metrics.depth_errors(doubled, truth, median_scaling=True)
    assert scaled.rmse_mm == pytest.approx(0.0, abs=1e-9)
    assert scaled.abs_rel == pytest.approx(0.0, abs=1e-12)


def test_depth_errors_use_only_pixels_both_sides_have():
    truth = np.array([1.0, 1.0, 0.0])
    predicted = np.array([1.1, 0.0, 5.0])
    errors = metrics.depth_errors(predicted, truth, median_scaling=False)
    assert errors.pixels == 1
    assert errors.rmse_mm == pytest.approx(100.0)
    assert metrics.depth_errors(np.zeros(3), truth, median_scaling=True).pixels == 0


def test_pooled_depth_errors_equal_the_errors_over_all_pixels_at_once():
    truth_a, truth_b = np.array([1.0, 2.0]), np.array([1.0, 1.0, 3.0])
    pred_a, pred_b = truth_a + [0.01, -0.02], truth_b + [0.03, 0.0, 0.05]
    pooled = metrics.pooled_depth_errors([metrics.depth_errors(pred_a, truth_a, False),
                                          metrics.depth_errors(pred_b, truth_b, False)])
    at_once = metrics.depth_errors(np.concatenate([pred_a, pred_b]), np.concatenate([truth_a, truth_b]), False)
    assert pooled.pixels == 5
    assert pooled.rmse_mm == pytest.approx(at_once.rmse_mm)
    assert pooled.abs_rel == pytest.approx(at_once.abs_rel)


def test_end_point_error_is_the_pixel_distance_and_nan_when_missing():
    truth = np.zeros((2, 2, 2))
    predicted = np.array([[[3.0, 4.0], [0.0, 1.0]], [[np.nan, np.nan], [6.0, 8.0]]])
    errors = metrics.end_point_errors(predicted, truth)
    assert errors[0].tolist() == [5.0, 1.0]
    assert np.isnan(errors[1, 0]) and errors[1, 1] == 10.0


def test_survival_counts_frames_until_the_first_visible_failure():
    threshold = 2.0
    errors = np.array([
        # point: never off | off on frame 3 | off only while hidden | missing on frame 2
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 50.0, np.nan],
        [1.0, 3.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
    ])
    visible = np.ones_like(errors, bool)
    visible[2, 2] = False
    result = metrics.survival(errors, visible, threshold)
    # frames after the seed: 1..4 (four); a failure on frame f leaves (f - 1) good frames
    assert result.tolist() == [1.0, 0.5, 1.0, 0.25]


def test_errors_by_motion_bins_by_the_true_motion_since_the_previous_frame():
    steps = np.array([0.5, 1.5, 1.5, 5.0])  # per-frame motion of the one point, frames 1..4
    truth = np.zeros((5, 1, 2))
    truth[1:, 0, 0] = np.cumsum(steps)
    errors = np.array([[9.0], [1.0], [2.0], [4.0], [7.0]])  # frame 0 (the seed) is never binned
    rows = metrics.errors_by_motion(errors, truth, np.ones((5, 1), bool), bins=(0, 1, 2, 4, np.inf))
    assert [(low, high, count) for low, high, _, count in rows] == [(0, 1, 1), (1, 2, 2), (2, 4, 0), (4, np.inf, 1)]
    means = [mean for _, _, mean, _ in rows]
    assert means[0] == 1.0 and means[1] == 3.0 and np.isnan(means[2]) and means[3] == 7.0


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_rigid_align_recovers_a_rotation_and_translation():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(20, 3))
    rotation, translation = _random_rotation(rng), np.array([0.1, -2.0, 3.0])
    found_rotation, found_translation = metrics.rigid_align(source, source @ rotation.T + translation)
    assert np.allclose(found_rotation, rotation, atol=1e-9)
    assert np.allclose(found_translation, translation, atol=1e-9)


def test_rigid_align_never_returns_a_reflection():
    source = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    rotation, _ = metrics.rigid_align(source, source * [-1, 1, 1])  # a mirror image
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_aligned_point_errors_ignore_rigid_motion_but_not_scale():
    tetrahedron = np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])  # centred, radius sqrt(3)
    rng = np.random.default_rng(2)
    moved = tetrahedron @ _random_rotation(rng).T + [0.3, 0.2, 1.0]
    truth = np.stack([tetrahedron, tetrahedron])
    predicted = np.stack([moved, tetrahedron * 1.1])
    errors = metrics.aligned_point_errors(predicted, truth, np.ones((2, 4), bool))
    assert np.allclose(errors[0], 0.0, atol=1e-9)
    assert np.allclose(errors[1], 0.1 * np.sqrt(3))  # best rigid fit of a scaled copy is the identity


def test_a_similarity_alignment_also_removes_size_but_not_shape():
    tetrahedron = np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    rng = np.random.default_rng(3)
    rotation = _random_rotation(rng)
    scaled = 1.08 * tetrahedron @ rotation.T + [0.3, 0.2, 1.0]  # 8 % too large, turned and moved
    bent = tetrahedron.copy()
    bent[0] *= 1.2  # one corner out of place: a shape error
    truth = np.stack([tetrahedron, tetrahedron])
    valid = np.ones((2, 4), bool)
    shape_errors = metrics.aligned_point_errors(np.stack([scaled, bent]), truth, valid, scale=True)
    assert np.allclose(shape_errors[0], 0.0, atol=1e-9)
    assert shape_errors[1].max() > 0.1
    assert metrics.aligned_point_errors(np.stack([scaled, bent]), truth, valid)[0].max() > 0.1
    matrix, _ = metrics.rigid_align(tetrahedron, scaled, scale=True)
    assert np.allclose(matrix, 1.08 * rotation, atol=1e-9)


def test_aligned_point_errors_skip_invalid_points_and_frames_with_too_few():
    truth = np.zeros((2, 4, 3))
    truth[:, :, 0] = np.arange(4)
    truth[:, :, 1] = [0, 1, 0, 1]
    valid = np.array([[True, True, True, False], [True, True, False, False]])
    errors = metrics.aligned_point_errors(truth, truth, valid)
    assert np.isnan(errors[0, 3]) and np.allclose(errors[0, :3], 0)
    assert np.isnan(errors[1]).all()


def test_acceleration_and_jitter_have_known_values():
    frames = np.arange(6, dtype=float)
    constant_velocity = np.stack([frames * 2, frames], axis=1)[:, None, :]
    assert np.allclose(metrics.acceleration(constant_velocity), 0)
    parabola = np.stack([frames**2, np.zeros(6)], axis=1)[:, None, :]
    assert metrics.jitter(parabola) == pytest.approx(2.0)
    shaking = np.stack([0.5 * (-1.0) ** frames, np.zeros(6)], axis=1)[:, None, :]
    assert metrics.jitter(shaking) == pytest.approx(2.0)  # |0.5 + 1 + 0.5|


def test_jitter_uses_only_fully_valid_frame_triples():
    track = np.zeros((5, 1, 2))
    track[4, 0, 0] = 100.0  # a jump on the last frame
    valid = np.ones((5, 1), bool)
    assert metrics.jitter(track, valid) == pytest.approx(100.0 / 3)
    valid[4] = False
    assert metrics.jitter(track, valid) == 0.0


def test_per_point_mean_and_mean_valid_skip_invalid_and_missing_values():
    values = np.array([[1.0, np.nan, 5.0], [3.0, 2.0, 7.0]])
    valid = np.array([[True, True, False], [True, True, False]])
    means = metrics.per_point_mean(values, valid)
    assert means[:2].tolist() == [2.0, 2.0] and np.isnan(means[2])
    assert metrics.mean_valid(values, valid) == pytest.approx(2.0)
    assert np.isnan(metrics.mean_valid(values, np.zeros_like(valid)))
