"""The accuracy benchmark's own pieces: seeding, the landmark baseline, scoring, and one real run."""
from __future__ import annotations

import numpy as np
import pytest

from bench import accuracy
from bench.accuracy_report import write_report
from bench.report import Report
from bench.sequences import ICT_MODEL_PATH

SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
SQUARE_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])


def test_anchors_reproduce_the_point_and_follow_the_mesh():
    points = np.array([[7.0, 2.0], [2.0, 6.0]])
    ids, weights = accuracy.anchor_to_mesh(points, SQUARE, SQUARE_TRIANGLES)
    assert ids.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert np.allclose(accuracy.carry(ids, weights, SQUARE[None]), points[None])
    moved = np.stack([SQUARE, SQUARE * 2 + [5.0, -1.0]])  # frame 1: scaled and shifted
    assert np.allclose(accuracy.carry(ids, weights, moved)[1], points * 2 + [5.0, -1.0])


def test_a_point_off_the_mesh_follows_its_nearest_vertex():
    ids, weights = accuracy.anchor_to_mesh(np.array([[11.0, 12.0]]), SQUARE, SQUARE_TRIANGLES)
    assert ids[0, 0] == 2 and weights[0].tolist() == [1.0, 0.0, 0.0]


def test_where_triangles_overlap_the_one_nearer_the_camera_holds_the_point():
    vertices = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    triangles = np.array([[0, 1, 2], [3, 4, 5]])
    depth = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    ids, _ = accuracy.anchor_to_mesh(np.array([[2.0, 2.0]]), vertices, triangles, depth)
    assert ids[0].tolist() == [3, 4, 5]


def test_seeds_keep_off_the_skin_edge_and_inside_the_allowed_pixels():
    skin = np.zeros((40, 40), bool)
    skin[5:35, 5:35] = True
    allowed = np.zeros_like(skin)
    allowed[:, :20] = True
    seeds = accuracy.choose_seeds(skin, allowed, count=1000, seed=3)
    xs, ys = seeds[:, 0], seeds[:, 1]
    margin = accuracy.SEED_MARGIN_PX
    assert len(seeds) == (20 - 5 - margin) * (30 - 2 * margin)  # every eligible pixel, once
    assert xs.min() == 5 + margin and xs.max() == 19 and ys.min() == 5 + margin and ys.max() == 34 - margin
    again = accuracy.choose_seeds(skin, allowed, 10, seed=3)
    assert np.array_equal(accuracy.choose_seeds(skin, allowed, 10, seed=3), again)


def test_hull_mask_covers_the_pixel_centres_inside_the_points():
    mask = accuracy.hull_mask(np.array([[2.0, 3.0], [12.0, 3.0], [12.0, 8.0], [2.0, 8.0], [7.0, 5.0]]), (20, 10))
    rows, cols = np.nonzero(mask)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (2, 12, 3, 8)


def test_perfect_tracks_score_zero_error_and_full_survival():
    rng = np.random.default_rng(0)
    truth_pixels = np.cumsum(rng.normal(size=(10, 5, 2)), axis=0)
    truth_positions = np.concatenate([truth_pixels / 100, np.ones((10, 5, 1))], axis=2)
    visible = np.ones((10, 5), bool)
    scores = accuracy.score_tracks(accuracy.Tracks(truth_pixels.copy(), truth_positions.copy()),
                                   truth_pixels, truth_positions, visible, visible, threshold_px=1.0)
    assert scores.epe_mean == 0 and scores.survival == 1 and scores.coverage == 1
    assert scores.jitter_of_error == 0 and scores.error_3d_mm == pytest.approx(0, abs=1e-9)
    assert scores.jitter == pytest.approx(scores.jitter_of_error + accuracy.metrics.jitter(truth_pixels, visible))


def test_missing_frames_lower_coverage_and_survival():
    truth = np.zeros((6, 2, 2))
    predicted = truth.copy()
    predicted[3] = np.nan  # no face on frame 3
    visible = np.ones((6, 2), bool)
    compared = accuracy.compared_pairs(visible, {"gappy": accuracy.Tracks(predicted, None)})
    scores = accuracy.score_tracks(accuracy.Tracks(predicted, None), truth, np.zeros((6, 2, 3)),
                                   visible, compared, threshold_px=1.0)
    assert scores.coverage == pytest.approx(4 / 5)
    assert scores.survival == pytest.approx(2 / 5)  # frames 1 and 2 of the five after the seed
    assert scores.error_3d_mm is None


def test_methods_are_scored_on_the_frames_they_all_have():
    truth = np.zeros((6, 2, 2))
    gappy = truth.copy()
    gappy[3] = np.nan
    filled = truth.copy()
    filled[3] = 5.0  # a poor guess where the other method has nothing
    methods = {"gappy": accuracy.Tracks(gappy, None), "filled": accuracy.Tracks(filled, None)}
    visible = np.ones((6, 2), bool)
    compared = accuracy.compared_pairs(visible, methods)
    assert not compared[3].any() and compared[[0, 1, 2, 4, 5]].all()
    scores = accuracy.score_tracks(methods["filled"], truth, np.zeros((6, 2, 3)), visible, compared, 1.0)
    assert scores.epe_mean == 0 and scores.coverage == 1


@pytest.mark.slow
def test_a_real_run_scores_the_pipeline_and_the_baseline(tmp_path):
    """Render a tiny clip with Blender, capture and reconstruct it, score everything, write the report."""
    if not accuracy.BLENDER_PYTHON.is_file():
        pytest.skip(f"needs Blender's Python ({accuracy.BLENDER_PYTHON}): run `make blender`")
    if not ICT_MODEL_PATH.is_file():
        pytest.skip(f"needs the ICT face model of ../shared ({ICT_MODEL_PATH} is absent)")
    settings = accuracy.Settings(frame_count=6, image_size=160, samples=4, seed_points=40)
    rendered, seconds = accuracy.rendered_sequence("talk", 11, settings, cache=tmp_path / "cache")
    (tmp_path / "work").mkdir()
    result = accuracy.evaluate_sequence(rendered, "mediapipe", settings, seconds, tmp_path / "work")
    assert result.seeds == 40
    baseline, ours = result.scores[accuracy.BASELINE], result.scores[accuracy.ours("mediapipe")]
    assert 0 < baseline.epe_mean < 6 and 0 < ours.epe_mean < 10  # pixels, on a slow 160 px clip
    assert baseline.coverage == 1
    assert 0 < result.depth[accuracy.BASELINE]["scaled"].rmse_mm < 30
    mesh = result.meshes[accuracy.ours("mediapipe")]
    assert np.isfinite(mesh.vertex_error_mm).sum() > 100 and 0 < mesh.mean_mm < 30
    report = Report(tmp_path / "report")
    write_report(report, settings, [result], [], [], [])
    text = report.write().read_text()
    assert "ours / baseline" in text and (tmp_path / "report" / "accuracy_mediapipe_vertex_error.png").is_file()
