"""Seeded benchmark sequences: reproducible, within their stated ranges, posed as documented."""
from __future__ import annotations

import numpy as np
import pytest

from bench import sequences
from bench.groundtruth import project
from model_runtime.errors import InputError


@pytest.fixture(scope="module")
def model():
    if not sequences.ICT_MODEL_PATH.is_file():
        pytest.skip(f"needs the ICT face model of ../shared ({sequences.ICT_MODEL_PATH} is absent)")
    return sequences.load_face_model()


def test_same_style_and_seed_give_the_same_sequence_and_another_seed_another(model):
    first = sequences.make_sequence("talk", 5, frame_count=20, image_size=128, model=model)
    again = sequences.make_sequence("talk", 5, frame_count=20, image_size=128, model=model)
    other = sequences.make_sequence("talk", 6, frame_count=20, image_size=128, model=model)
    assert first.fingerprint() == again.fingerprint()
    assert np.array_equal(first.expressions, again.expressions)
    assert first.fingerprint() != other.fingerprint()
    assert not np.allclose(first.head_angles, other.head_angles)


def test_spec_survives_a_round_trip_through_npz(model, tmp_path):
    spec = sequences.make_sequence("occlusion", 3, frame_count=12, image_size=128, model=model)
    np.savez(tmp_path / "spec.npz", **spec.to_arrays())
    with np.load(tmp_path / "spec.npz") as data:
        loaded = sequences.SequenceSpec.from_arrays({key: data[key] for key in data.files})
    assert loaded.fingerprint() == spec.fingerprint()
    assert loaded.name == "occlusion-3" and loaded.occluder is not None
    assert np.allclose(loaded.occluder.centres, spec.occluder.centres)


def test_unknown_style_is_refused_with_the_choices(model):
    with pytest.raises(InputError, match="talk, turn, fast, occlusion"):
        sequences.make_sequence("dance", 1, model=model)


def test_missing_model_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match="ict_face_model"):
        sequences.load_face_model(tmp_path / "ict_face_model.npz")


def test_face_model_is_in_metres_with_split_quads_and_painted_irises(model):
    assert model.neutral.shape == (14388, 3)
    assert 0.2 < np.ptp(model.neutral[:, 1]) < 0.4  # a head is about 0.3 m tall, not 30 (cm)
    assert model.triangles.shape == (28552, 3)  # 14,340 polygons, 14,212 of them quads
    assert len(model.expression_names) == model.expression_basis.shape[0] == 53
    iris = model.triangle_material == sequences.MATERIAL_IRIS
    assert iris.any() and np.all(np.isin(model.triangle_region[iris], [2, 3]))
    assert np.all(model.triangle_material[model.triangle_region <= 1] == sequences.MATERIAL_SKIN)


def test_expressions_are_weights_with_blinks_and_asymmetry_where_promised(model):
    names = list(model.expression_names)
    for style, seed in sequences.SUITE:
        spec = sequences.make_sequence(style, seed, model=model)
        assert spec.expressions.shape == (60, 53)
        assert spec.expressions.min() >= 0 and spec.expressions.max() <= 1
        blinks = spec.expressions[:, [names.index("eyeBlink_L"), names.index("eyeBlink_R")]]
        assert blinks.max() > 0.9, spec.name
    turn = sequences.make_sequence("turn", 12, model=model).expressions
    pairs = [(names.index(n), names.index(n[:-2] + "_R")) for n in names if n.endswith("_L")]
    assert max(np.abs(turn[:, left] - turn[:, right]).max() for left, right in pairs) > 0.2
    talk = sequences.make_sequence("talk", 11, model=model).expressions
    assert np.ptp(talk[:, names.index("jawOpen")]) > 0.1


def test_head_motion_ranges_per_style(model):
    turn = sequences.make_sequence("turn", 12, model=model)
    assert 38 <= np.abs(turn.head_angles[:, 0]).max() <= 45
    talk = sequences.make_sequence("talk", 11, model=model)
    fast = sequences.make_sequence("fast", 13, model=model)

    def mean_speed(spec) -> float:
        return float(np.abs(np.diff(spec.head_angles, axis=0)).mean())

    assert mean_speed(fast) > 3 * mean_speed(talk)


def test_head_pose_is_rigid_and_faces_the_camera(model):
    spec = sequences.make_sequence("talk", 11, model=model)
    pose = spec.head_pose(0)
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3))
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    vertices = spec.posed_vertices(model, 0)
    shaped = model.shape(spec.identity, spec.expressions[0])
    assert np.allclose(vertices, shaped @ pose[:3, :3].T + pose[:3, 3])
    nose, left_eye_corner = model.landmarks68[30], model.landmarks68[45]  # 45: the subject's left eye
    assert vertices[nose, 2] < vertices[left_eye_corner, 2]  # the nose is nearer the camera
    pixels = project(vertices, spec.intrinsics())
    assert pixels[left_eye_corner, 0] > pixels[nose, 0]  # subject's left is image right
    assert pixels[model.landmarks68[8], 1] > pixels[nose, 1]  # the chin is below the nose


def test_positive_yaw_turns_the_face_toward_image_left(model):
    spec = sequences.make_sequence("talk", 11, model=model)
    spec.head_angles[0] = 0
    spec.head_angles[1] = [30, 0, 0]
    nose = model.landmarks68[30]
    pixels = [project(spec.posed_vertices(model, frame)[nose], spec.intrinsics()) for frame in (0, 1)]
    assert pixels[1][0] < pixels[0][0] - 10


def test_intrinsics_put_the_principal_point_at_the_image_centre(model):
    spec = sequences.make_sequence("fast", 13, image_size=200, model=model)
    intrinsics = spec.intrinsics()
    assert intrinsics[0, 2] == intrinsics[1, 2] == 99.5
    assert intrinsics[0, 0] == intrinsics[1, 1] == spec.focal_px


def test_whole_face_is_in_frame_on_every_frame(model):
    for style, seed in sequences.SUITE:
        spec = sequences.make_sequence(style, seed, model=model)
        face = np.unique(model.triangles[model.triangle_region == sequences.SURFACE_FACE])
        for frame in range(spec.frame_count):
            pixels = project(spec.posed_vertices(model, frame)[face], spec.intrinsics())
            assert pixels.min() > 0 and pixels.max() < spec.image_size - 1, (spec.name, frame)


def test_occluder_starts_and_ends_outside_and_crosses_the_face(model):
    spec = sequences.make_sequence("occlusion", 14, model=model)
    intrinsics = spec.intrinsics()
    for frame in (0, spec.frame_count - 1):
        corners = project(spec.occluder.corners(frame), intrinsics)
        assert corners[:, 0].min() > spec.image_size or corners[:, 0].max() < 0
    nose = project(spec.posed_vertices(model, 30)[model.landmarks68[30]], intrinsics)
    middle = project(spec.occluder.corners(30), intrinsics)
    crossing = [project(spec.occluder.corners(t), intrinsics)[:, 0] for t in range(spec.frame_count)]
    assert any(c.min() < nose[0] < c.max() for c in crossing)
    assert middle[:, 1].min() < nose[1] < middle[:, 1].max()
    assert (spec.occluder.centres[:, 2] < spec.head_positions[:, 2]).all()


def test_smooth_noise_and_bump_shapes():
    rng = np.random.default_rng(0)
    times = np.linspace(0, 2, 51)
    curve = sequences.smooth_noise(rng, times, 1.0)
    assert curve[0] == 0 and np.abs(curve).max() == pytest.approx(1.0)
    shape = sequences.bump(times, 1.0, 0.5)
    assert shape[25] == pytest.approx(1.0) and shape[0] == 0 and shape[-1] == 0
