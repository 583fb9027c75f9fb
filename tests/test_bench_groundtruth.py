"""Analytic ground truth of the benchmark clips agrees with the posed mesh it comes from."""
from __future__ import annotations

import numpy as np
import pytest

from bench import groundtruth, sequences


@pytest.fixture(scope="module")
def model():
    if not sequences.ICT_MODEL_PATH.is_file():
        pytest.skip(f"needs the ICT face model of ../shared ({sequences.ICT_MODEL_PATH} is absent)")
    return sequences.load_face_model()


@pytest.fixture(scope="module")
def occlusion(model):
    return sequences.make_sequence("occlusion", 14, frame_count=40, image_size=160, model=model)


def _unproject(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(depth > 0)
    z = depth[rows, cols].astype(np.float64)
    x = (cols - intrinsics[0, 2]) / intrinsics[0, 0] * z
    y = (rows - intrinsics[1, 2]) / intrinsics[1, 1] * z
    return np.stack([x, y, z], axis=1)


def test_each_pixel_sees_the_surface_point_its_triangle_and_weights_name(model, occlusion):
    truth = groundtruth.ground_truth_frame(occlusion, model, 0)
    vertices, triangles, _ = groundtruth.scene_geometry(occlusion, model, 0)
    rows, cols = np.nonzero(truth["triangle"] >= 0)
    points = groundtruth.surface_points(vertices, triangles, truth["triangle"][rows, cols],
                                        truth["barycentric"][rows, cols])
    assert np.abs(_unproject(truth["depth"], truth["intrinsics"]) - points).max() < 1e-6  # metres
    assert np.allclose(truth["barycentric"][rows, cols].sum(axis=1), 1.0, atol=1e-5)


def test_depth_at_a_projected_vertex_is_the_vertex_depth(model, occlusion):
    truth = groundtruth.ground_truth_frame(occlusion, model, 0)
    face_vertices = np.unique(model.triangles[model.triangle_region == sequences.SURFACE_FACE])
    seen = face_vertices[truth["vertex_visible"][face_vertices]]
    pixels = np.rint(truth["vertex_pixels"][seen]).astype(int)
    read = truth["depth"][pixels[:, 1], pixels[:, 0]]
    difference = np.abs(read - truth["vertices"][seen, 2])
    footprint = truth["vertices"][seen, 2] / occlusion.focal_px  # metres one pixel spans at the vertex
    assert len(seen) > 2000
    # the nearest pixel centre lies up to 0.7 px beside the vertex, on skin that slopes away at the sides
    assert np.median(difference / footprint) < 0.5 and np.percentile(difference / footprint, 90) < 3.0


def test_canonical_map_holds_the_neutral_position_of_the_surface(model, occlusion):
    truth = groundtruth.ground_truth_frame(occlusion, model, 5)
    nose = model.landmarks68[30]
    x, y = np.rint(truth["vertex_pixels"][nose]).astype(int)
    assert truth["face_mask"][y, x]
    assert np.linalg.norm(truth["canonical"][y, x] - model.neutral[nose]) < 0.004
    # canonical is neutral whatever the identity: the posed nose tip is elsewhere in model space
    posed_in_model = model.shape(occlusion.identity, occlusion.expressions[5])[nose]
    assert np.linalg.norm(posed_in_model - model.neutral[nose]) > 0.001


def test_occluder_hides_the_face_behind_it(model, occlusion):
    frame = occlusion.frame_count // 2  # the box is in front of the middle of the face
    truth = groundtruth.ground_truth_frame(occlusion, model, frame)
    covered = truth["surface"] == sequences.SURFACE_OCCLUDER
    assert not (truth["face_mask"] & covered).any()
    hidden = ~truth["vertex_visible"]
    pixels = np.rint(truth["vertex_pixels"]).astype(int)
    inside = (pixels >= 0).all(axis=1) & (pixels < occlusion.image_size).all(axis=1)
    behind_box = np.zeros(len(pixels), bool)
    behind_box[inside] = covered[pixels[inside, 1], pixels[inside, 0]]
    assert behind_box.sum() > 100 and hidden[behind_box].all()
    assert (truth["depth"][covered] < occlusion.occluder.centres[frame, 2] + 0.02).all()


def test_mouth_interior_and_face_mask_codes(model):
    spec = sequences.make_sequence("talk", 11, frame_count=60, image_size=160, model=model)
    jaw = list(model.expression_names).index("jawOpen")
    frame = int(np.argmax(spec.expressions[:, jaw]))
    truth = groundtruth.ground_truth_frame(spec, model, frame)
    assert spec.expressions[frame, jaw] > 0.2
    assert (truth["surface"] == sequences.SURFACE_INTERIOR).sum() > 0  # the open mouth shows the inside
    assert np.array_equal(truth["face_mask"], np.isin(truth["surface"], sequences.FACE_SURFACES))
    assert (truth["depth"][truth["surface"] == sequences.SURFACE_BACKGROUND] == 0).all()


def test_visible_points_tolerates_its_own_surface_but_not_a_nearer_one():
    depth = np.full((10, 10), 1.0)
    intrinsics = np.array([[10.0, 0, 4.5], [0, 10, 4.5], [0, 0, 1]])
    points = np.array([[0.0, 0.0, 1.005], [0.0, 0.0, 1.02], [5.0, 0.0, 1.0], [0.0, 0.0, 0.5]])
    assert groundtruth.visible_points(points, depth, intrinsics).tolist() == [True, False, False, True]


def test_surface_tracks_follow_the_mesh_through_the_stored_frames(model, tmp_path):
    spec = sequences.make_sequence("fast", 13, frame_count=4, image_size=128, model=model)
    (tmp_path / "gt").mkdir()
    np.savez(tmp_path / "sequence.npz", **spec.to_arrays(), triangles=model.triangles,
             expression_names=np.array(model.expression_names))
    for frame in range(spec.frame_count):
        np.savez(tmp_path / "gt" / f"{frame:06d}.npz", **groundtruth.ground_truth_frame(spec, model, frame))
    rendered = groundtruth.RenderedSequence(tmp_path)
    corner = np.array([0, 1, 2])  # corner k of triangles 0..2: vertices triangles[i, k]
    weights = np.eye(3)[corner]
    positions, pixels, visible = rendered.surface_tracks(np.arange(3), weights)
    expected = np.stack([spec.posed_vertices(model, t)[model.triangles[np.arange(3), corner]]
                         for t in range(spec.frame_count)])
    assert positions.shape == (4, 3, 3) and visible.shape == (4, 3)
    assert np.abs(positions - expected).max() < 1e-6
    assert np.allclose(pixels, groundtruth.project(expected, spec.intrinsics()), atol=1e-3)
