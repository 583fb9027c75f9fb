"""The Face Anything predictor on CPU: the small structure with random weights, loaded from a
checkpoint in the release's layout through the same code path as the giant network. Random
weights predict nothing meaningful, so these tests check the contract, the windowing and the
plumbing, not the quality."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import first_face_frames
from model_runtime.backends.faceanything import (
    FaceAnythingBackend,
    FramePrediction,
    frame_prediction,
    metres_per_depth_unit,
)
from model_runtime.capture_folder import stored_depth
from model_runtime.contract import CANONICAL_SPACE_ID
from model_runtime.errors import InputError, UserError
from model_runtime.map_fusion import face_pixels, sampler_at_map_pixels
from model_runtime.network.canonical_alignment import RELEASE_SPACE_ID
from model_runtime.network.model import build_network
from model_runtime.network.rays import rays_for_camera

FRAME_SIZE = (96, 72)  # width, height


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "checkpoint.pt"
    torch.save({"model": build_network("small").state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    """Four smooth, different frames (a moving blob on a gradient)."""
    width, height = FRAME_SIZE
    rows, cols = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(4):
        blob = 180 * np.exp(-((cols - 30 - 8 * t) ** 2 + (rows - 36) ** 2) / 300.0)
        frames.append(np.stack([blob + cols, blob + rows, 255 - blob], -1).clip(0, 255).astype(np.uint8))
    return frames


def backend(checkpoint, tmp_path, **options) -> FaceAnythingBackend:
    # The network's own output: the appearance stage (tests/test_map_fusion.py) changes canonical maps.
    settings = dict(size="small", device="cpu", resolution=84, align_to_template=False, mask_confidence=0.0,
                    appearance=False)
    settings.update(options)
    return FaceAnythingBackend(checkpoint, alignment_cache=tmp_path / "alignments", **settings)


def run(checkpoint, tmp_path, frames, **options) -> list:
    predictor = backend(checkpoint, tmp_path, **options)
    try:
        return list(predictor.predict_frames(iter(frames), None))
    finally:
        predictor.close()


def to_frame(network_map: np.ndarray) -> np.ndarray:
    return cv2.resize(network_map, FRAME_SIZE, interpolation=cv2.INTER_LINEAR)


def test_frames_fill_the_contract(checkpoint, tmp_path, clip):
    # A threshold that random weights pass on about half of the pixels, so crops are partial.
    confidence = backend(checkpoint, tmp_path).infer(clip[:2])["canonical_conf"]
    threshold = float(np.median(1 - 1 / confidence))
    predictor = backend(checkpoint, tmp_path, window=2, overlap=1, mask_confidence=threshold)
    maps = list(predictor.predict_frames(iter(clip[:3]), None))
    assert len(maps) == 3 and all(frame.has_face for frame in maps)
    assert any(frame.window != (0, 0, *FRAME_SIZE) or not frame.mask.all() for frame in maps)
    for frame in maps:
        x0, y0, x1, y1 = frame.window
        assert frame.frame_size == FRAME_SIZE and 0 <= x0 <= x1 <= FRAME_SIZE[0] and 0 <= y0 <= y1 <= FRAME_SIZE[1]
        assert frame.depth.shape == frame.mask.shape == (y1 - y0, x1 - x0)
        assert frame.canonical.shape == (y1 - y0, x1 - x0, 3)
        assert frame.depth.dtype == frame.canonical.dtype == frame.canonical_confidence.dtype == np.float32
        assert frame.mask.dtype == bool and frame.intrinsics.dtype == np.float64
        assert frame.intrinsics.shape == (3, 3) and frame.intrinsics[0, 0] > 0 and frame.intrinsics[1, 1] > 0
        for confidence in (frame.depth_confidence, frame.canonical_confidence):
            assert confidence.min() >= 0 and confidence.max() <= 1
        assert np.all(frame.depth[~frame.mask] == 0) and np.all(frame.canonical[~frame.mask] == 0)
        assert np.all(frame.depth[frame.mask] > 0)
        assert np.all(frame.canonical_confidence[frame.mask] >= threshold)
    assert predictor.canonical_space == RELEASE_SPACE_ID
    described = predictor.describe()
    assert described["size"] == "small" and len(described["weights_sha256"]) == 64
    assert (described["window"], described["overlap"], described["device"]) == (2, 1, "cpu")
    assert described["dtype"] == "float32" and described["depth_units"] == "network"


def test_results_stream_within_one_window(checkpoint, tmp_path, clip):
    consumed = []

    def frames():
        for image in clip:
            consumed.append(image)
            yield image

    predictor = backend(checkpoint, tmp_path, window=2, overlap=1)
    stream = predictor.predict_frames(frames(), None)
    next(stream)
    assert len(consumed) == 2  # the first window, not the clip
    assert len(list(stream)) == len(clip) - 1


def test_window_covering_the_clip_equals_whole_clip_inference(checkpoint, tmp_path, clip):
    frames = clip[:3]
    whole = backend(checkpoint, tmp_path).infer(frames)
    maps = run(checkpoint, tmp_path, frames, window=8, overlap=2)
    for i, frame in enumerate(maps):
        assert frame.window == (0, 0, *FRAME_SIZE)  # mask_confidence 0: every pixel
        np.testing.assert_array_equal(frame.depth, to_frame(whole["depth"][i]))
        np.testing.assert_array_equal(frame.canonical, to_frame(whole["canonical"][i]))


def test_overlap_ties_each_window_to_the_previous_one(checkpoint, tmp_path, clip):
    frames = clip[:3]
    maps = run(checkpoint, tmp_path, frames, window=2, overlap=1)
    predictor = backend(checkpoint, tmp_path)
    first, second = predictor.infer(frames[:2]), predictor.infer(frames[1:])
    raw_ratio = float(np.median(first["depth"][1] / second["depth"][0]))  # frame 1, seen by both windows
    assert abs(raw_ratio - 1) > 1e-6  # the two windows disagree on the shared frame's scale
    # The tie reads frame 1 as emitted and stored (depth rounded as the capture folder keeps it),
    # sampled back at network resolution, so a resumed capture that reads it from disk ties alike.
    sample = sampler_at_map_pixels(maps[1], second["depth"][0].shape[::-1])
    face = face_pixels(sample, maps[1].mask)
    ratio = float(np.median(sample(stored_depth(maps[1].depth, maps[1].mask))[face] / second["depth"][0][face]))
    assert ratio == pytest.approx(raw_ratio, rel=1e-3) and ratio != raw_ratio
    np.testing.assert_array_equal(maps[0].depth, to_frame(first["depth"][0]))
    np.testing.assert_array_equal(maps[1].depth, to_frame(first["depth"][1]))
    np.testing.assert_allclose(maps[2].depth, to_frame(second["depth"][1] * np.float32(ratio)), rtol=1e-6)
    np.testing.assert_array_equal(maps[2].canonical, to_frame(second["canonical"][1]))  # shared space: no rescale
    again = run(checkpoint, tmp_path, frames, window=2, overlap=1)
    for a, b in zip(maps, again):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.canonical, b.canonical)
        np.testing.assert_array_equal(a.intrinsics, b.intrinsics)


def test_windows_lie_on_a_grid_of_capture_positions(checkpoint, tmp_path, clip):
    """An unreadable frame (``lose_track`` instead of an image) leaves a gap in its window; the
    later windows keep their frames instead of shifting by one."""
    predictor = backend(checkpoint, tmp_path, window=2, overlap=0)

    def stream():
        yield clip[0]
        predictor.lose_track()  # position 1 is unreadable
        yield from clip[2:4]

    maps = list(predictor.predict_frames(stream(), None))
    alone = run(checkpoint, tmp_path, clip[:1], window=2, overlap=0)  # window 0: frame 0 without frame 1
    together = run(checkpoint, tmp_path, clip[2:4], window=2, overlap=0)  # window 1: frames 2 and 3
    assert len(maps) == 3
    for a, b in zip(maps, alone + together):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.canonical, b.canonical)


@pytest.mark.parametrize("mode, window, overlap, expected", [
    # window k covers positions [2k, 2k + 3) and emits from 2k + 1 (window 0 from 0)
    ("window", 3, 1, [(0, 0), (0, 0), (0, 0), (2, 3), (2, 3), (4, 5), (4, 5)]),
    # window k covers [k, k + 3) and emits k + 2
    ("window", 3, 2, [(0, 0), (0, 0), (0, 0), (1, 3), (2, 4), (3, 5), (4, 6)]),
    ("window", 2, 0, [(0, 0), (0, 0), (2, 2), (2, 2), (4, 4), (4, 4), (6, 6)]),
    ("single", 8, 2, [(p, p) for p in range(7)]),
])
def test_a_resume_restarts_at_the_window_that_emits_the_first_missing_frame(checkpoint, tmp_path, mode, window,
                                                                            overlap, expected):
    predictor = backend(checkpoint, tmp_path, mode=mode, window=window, overlap=overlap)
    assert [predictor.resume_window(first_missing) for first_missing in range(7)] == expected
    assert predictor.depends_on_history == (mode == "window")  # appearance off: only the windows


def test_single_mode_equals_a_window_of_one_and_sees_one_frame(checkpoint, tmp_path, clip):
    single = run(checkpoint, tmp_path, clip[:2], mode="single")
    window_of_one = run(checkpoint, tmp_path, clip[:2], window=1, overlap=0)
    other_neighbour = run(checkpoint, tmp_path, [clip[3], clip[1]], mode="single")
    together = run(checkpoint, tmp_path, clip[:2], window=2, overlap=0)
    for a, b in zip(single, window_of_one):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.canonical, b.canonical)
    np.testing.assert_array_equal(single[1].depth, other_neighbour[1].depth)
    alone = backend(checkpoint, tmp_path).predict(clip[1], None)  # the registry's one-frame call
    np.testing.assert_array_equal(alone.depth, single[1].depth)
    assert not np.array_equal(single[1].depth, together[1].depth)  # in a window, frames attend to each other


def test_given_intrinsics_are_used_and_depth_follows_the_focal_length(checkpoint, tmp_path, clip):
    given = np.array([[150.0, 0, 47.5], [0, 150.0, 35.5], [0, 0, 1]])
    predictor = backend(checkpoint, tmp_path, mode="single")
    maps = list(predictor.predict_frames(iter(clip[:1]), given))
    np.testing.assert_array_equal(maps[0].intrinsics, given)
    # Rays of a camera with a 100 px focal length: the same face seen with 150 px is 1.5x further.
    k_normalised = np.array([[100 / 48, 0, 1.0], [0, 100 / 36, 1.0], [0, 0, 1]])
    raw = {
        "ray": rays_for_camera(k_normalised, np.eye(3), (12, 16))[None],
        "ray_conf": np.full((1, 12, 16), 5.0),
        "depth": np.full((1, 6, 8), 2.0, np.float32),
        "depth_conf": np.full((1, 6, 8), 3.0, np.float32),
        "canonical": np.zeros((1, 6, 8, 3), np.float32),
        "canonical_conf": np.full((1, 6, 8), 3.0, np.float32),
    }
    solved = frame_prediction(raw, 0, FRAME_SIZE, None)
    np.testing.assert_allclose(solved.intrinsics[0, 0], 100.0, rtol=1e-6)
    np.testing.assert_allclose(solved.depth, 2.0)
    rescaled = frame_prediction(raw, 0, FRAME_SIZE, given)
    np.testing.assert_array_equal(rescaled.intrinsics, given)
    np.testing.assert_allclose(rescaled.depth, 3.0, rtol=1e-5)
    np.testing.assert_allclose(rescaled.depth_confidence, 1 - 1 / 3.0, rtol=1e-6)


def test_metric_scale_comes_from_template_space_canonical_coordinates():
    """A face-like bump 0.6 m away, seen at 40x30 network pixels of an 80x60 frame, whose depth
    the network reports as a third of the metres: one network unit is 3 m."""
    k = np.array([[90.0, 0, 39.5], [0, 90.0, 29.5], [0, 0, 1]])
    rows, cols = np.mgrid[0:30, 0:40].astype(np.float64)
    x, y = (cols + 0.5) * 2 - 0.5, (rows + 0.5) * 2 - 0.5  # network pixel centres in the frame
    rays = np.stack([(x - k[0, 2]) / k[0, 0], (y - k[1, 2]) / k[1, 1], np.ones_like(x)], -1)
    depth_m = 0.6 - 0.04 * np.exp(-((x - 40) ** 2 + (y - 30) ** 2) / 400)
    camera = rays * depth_m[..., None]
    pose_rotation = np.diag([1.0, -1.0, -1.0])  # template (+Y up, +Z to the camera) -> OpenCV
    canonical = (camera - [0.0, 0.0, 0.6]) @ pose_rotation  # R^T (P - t)
    prediction = FramePrediction(
        depth=(depth_m / 3).astype(np.float32),
        depth_confidence=np.ones((30, 40), np.float32),
        canonical=canonical.astype(np.float32),
        canonical_confidence=np.ones((30, 40), np.float32),
        intrinsics=k,
        frame_size=(80, 60),
        mask=np.ones((30, 40), bool),
    )
    assert metres_per_depth_unit(prediction) == pytest.approx(3.0, rel=1e-4)
    prediction.mask[:] = False
    assert metres_per_depth_unit(prediction) is None


def test_bad_settings_and_frames_get_clear_errors(checkpoint, tmp_path, clip):
    with pytest.raises(UserError, match="needs the network's weights"):
        FaceAnythingBackend(None)
    with pytest.raises(UserError, match="'small'.*'giant'"):
        FaceAnythingBackend(checkpoint, device="cpu")  # giant is the default size
    with pytest.raises(UserError, match="overlap"):
        backend(checkpoint, tmp_path, window=2, overlap=2)
    with pytest.raises(UserError, match="mode"):
        backend(checkpoint, tmp_path, mode="batch")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            backend(checkpoint, tmp_path, device="cuda")
    predictor = backend(checkpoint, tmp_path, window=4, overlap=1)
    with pytest.raises(InputError, match="frame 1 is 48x36"):
        list(predictor.predict_frames(iter([clip[0], clip[1][::2, ::2]]), None))
    with pytest.raises(InputError, match="frame 0 is not an RGB image"):
        list(predictor.predict_frames(iter([clip[0][..., 0]]), None))
    with pytest.raises(InputError, match="intrinsics"):
        list(predictor.predict_frames(iter(clip[:1]), np.eye(2)))


def mediapipe_landmarks(image: np.ndarray, intrinsics: np.ndarray):
    """The 478 MediaPipe landmarks in pixels (the real Face Mesh), all counted as visible."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        return None
    height, width = image.shape[:2]
    points = np.array([(p.x * width, p.y * height) for p in result.multi_face_landmarks[0].landmark])
    return points - 0.5, np.ones(len(points), bool)  # normalised coordinates put pixel centres at +0.5


def test_template_alignment_is_fitted_once_then_cached(checkpoint, tmp_path):
    frames = first_face_frames(2)
    predictor = backend(
        checkpoint, tmp_path, window=2, overlap=0, align_to_template=True, landmark_detector=mediapipe_landmarks
    )
    assert predictor.canonical_space == CANONICAL_SPACE_ID and predictor.alignment is None
    maps = list(predictor.predict_frames(iter(frames), None))
    assert len(maps) == 2
    summary = predictor.alignment.summary()
    assert summary["pairs"] >= 30 and np.isfinite(summary["loo_rms_mm"]) and summary["loo_rms_mm"] > 0
    assert predictor.describe()["alignment"] == summary and predictor.describe()["depth_units"] == "metres"
    cached = list((tmp_path / "alignments").glob("*.npz"))
    assert [p.stem for p in cached] == [predictor.weights_sha256]

    def must_not_run(image, intrinsics):
        raise AssertionError("the cached alignment should have been used")

    again = backend(checkpoint, tmp_path, window=2, overlap=0, align_to_template=True, landmark_detector=must_not_run)
    assert again.alignment is not None and again.alignment.summary() == summary
    for a, b in zip(maps, again.predict_frames(iter(frames), None)):
        np.testing.assert_array_equal(a.canonical, b.canonical)
        assert a.window == b.window


@pytest.mark.skipif(
    importlib.util.find_spec("model_runtime.backends.mediapipe_dense") is None,
    reason="needs the MediaPipe backend (model_runtime/backends/mediapipe_dense.py)",
)
def test_alignment_uses_the_mediapipe_backend_by_default(checkpoint, tmp_path):
    frames = first_face_frames(2)
    predictor = backend(checkpoint, tmp_path, window=2, overlap=0, align_to_template=True)
    assert len(list(predictor.predict_frames(iter(frames), None))) == 2
    assert predictor.alignment is not None and predictor.alignment.summary()["pairs"] >= 30
