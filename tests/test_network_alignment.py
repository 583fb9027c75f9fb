"""The release-space -> template-space alignment: recovering a known warp, closed-form
leave-one-out errors, outlier rejection, the per-checkpoint cache and the pair collection."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RBFInterpolator

from model_runtime.network.canonical_alignment import (
    CanonicalAlignment,
    collect_pairs,
    fit_alignment,
    loo_errors,
    sample_bilinear,
    similarity_fit,
)
from model_runtime.template import load_template


def rotation_about(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def to_release_space(template_points: np.ndarray) -> np.ndarray:
    """A known warp: a smooth bend (up to ~6 mm) then a similarity (x8, rotated, shifted)."""
    x, y, z = template_points.T
    bent = template_points + np.stack([0.004 * np.sin(y / 0.05), 0.003 * np.cos(x / 0.04), 0.006 * (x / 0.08) ** 2], 1)
    return 8.0 * bent @ rotation_about(np.array([0.3, 1.0, 0.2]), 25.0).T + np.array([0.5, -1.0, 2.0])


def points_on_template(count: int, seed: int) -> np.ndarray:
    """Random points on the template surface (not the vertices the fit saw)."""
    template = load_template()
    rng = np.random.default_rng(seed)
    triangles = template.vertices[template.triangles[rng.integers(0, len(template.triangles), count)]]
    weights = rng.dirichlet(np.ones(3), count)
    return np.einsum("nk,nkd->nd", weights, triangles)


def test_known_warp_is_recovered_within_half_a_millimetre():
    template = load_template().vertices
    alignment = fit_alignment(to_release_space(template), template)
    held_out = points_on_template(2000, seed=1)
    error_mm = np.linalg.norm(alignment.apply(to_release_space(held_out)) - held_out, axis=1) * 1000
    assert np.percentile(error_mm, 95) < 0.5, np.percentile(error_mm, 95)
    summary = alignment.summary()
    assert summary["pairs"] == len(template) and summary["rejected_pairs"] == 0
    assert summary["loo_rms_mm"] < 0.5 and summary["fit_rms_mm"] <= summary["loo_rms_mm"]
    assert abs(summary["scale"] - 1 / 8) < 0.01


def test_a_similarity_alone_cannot_fit_the_bend():
    template = load_template().vertices
    source = to_release_space(template)
    scale, rotation, translation = similarity_fit(source, template)
    rigid_error_mm = np.linalg.norm(scale * source @ rotation.T + translation - template, axis=1) * 1000
    assert rigid_error_mm.max() > 2.0  # so the recovered warp above needed the residual field


@pytest.mark.parametrize("smoothing", [0.0, 1e-3, 1e-1])
def test_closed_form_leave_one_out_matches_refitting(smoothing):
    rng = np.random.default_rng(0)
    nodes = rng.normal(size=(40, 3))
    values = np.stack([np.sin(nodes[:, 0]), nodes[:, 1] * nodes[:, 2], np.cos(nodes[:, 2])], 1)
    brute = []
    for i in range(len(nodes)):
        keep = np.arange(len(nodes)) != i
        fit = RBFInterpolator(nodes[keep], values[keep], kernel="thin_plate_spline", smoothing=smoothing)
        brute.append(np.linalg.norm(fit(nodes[i : i + 1])[0] - values[i]))
    np.testing.assert_allclose(loo_errors(nodes, values, smoothing), brute, rtol=1e-6, atol=1e-9)


def test_mislocated_landmarks_are_rejected():
    template = load_template().vertices
    source = to_release_space(template)
    bad = np.arange(0, 478, 60)  # 8 landmarks off by 3 cm (in template units)
    source[bad] += 8.0 * 0.03 * np.array([1.0, -0.5, 0.3])
    alignment = fit_alignment(source, template)
    assert alignment.rejected >= len(bad)
    held_out = points_on_template(500, seed=2)
    error_mm = np.linalg.norm(alignment.apply(to_release_space(held_out)) - held_out, axis=1) * 1000
    assert np.percentile(error_mm, 95) < 1.0


def test_too_few_pairs_are_refused():
    template = load_template().vertices[:10]
    with pytest.raises(ValueError, match="at least"):
        fit_alignment(to_release_space(template), template)


def test_cache_round_trip_is_keyed_by_the_weights_hash(tmp_path):
    template = load_template().vertices
    alignment = fit_alignment(to_release_space(template), template)
    path = tmp_path / "alignments" / "abc.npz"
    alignment.save(path, "a" * 64)
    loaded = CanonicalAlignment.load(path, "a" * 64)
    probe = to_release_space(points_on_template(100, seed=3))
    np.testing.assert_array_equal(loaded.apply(probe), alignment.apply(probe))
    assert loaded.summary() == alignment.summary()
    assert CanonicalAlignment.load(path, "b" * 64) is None
    assert CanonicalAlignment.load(tmp_path / "none.npz", "a" * 64) is None


def test_sample_bilinear_is_exact_on_a_linear_ramp():
    rows, cols = np.mgrid[0:6, 0:8].astype(np.float64)
    ramp = np.stack([cols * 2 + rows, rows - cols], axis=-1)
    points = np.array([[0.0, 0.0], [3.25, 2.5], [7.0, 5.0], [8.5, 1.0], [-0.2, 1.0]])
    values, inside = sample_bilinear(ramp, points)
    np.testing.assert_allclose(values[:3], [[0, 0], [9.0, -0.75], [19.0, -2.0]])
    assert inside.tolist() == [True, True, True, False, False]


def test_collect_pairs_takes_the_median_per_landmark():
    template = load_template().vertices
    observations = [
        (np.array([5, 9]), np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])),
        (np.array([5]), np.array([[1.2, 0.8, 1.0]])),
        (np.array([5]), np.array([[9.0, 9.0, 9.0]])),  # one frame's mislocated landmark
    ]
    source, target, indices = collect_pairs(observations, template)
    assert indices.tolist() == [5, 9]
    np.testing.assert_allclose(source, [[1.2, 1.0, 1.0], [2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(target, template[[5, 9]])
