"""The appearance stage: subpixel tracking of texture, occluders, no drift, exact resume."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model_runtime.appearance import AppearanceTracker, loose_points
from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.capture_folder import CaptureFolder, FRAMES_DIR
from model_runtime.errors import Cancelled
from model_runtime.template import load_template

SAMPLE = Path(__file__).resolve().parents[1] / "cache" / "sample"
SIZE = 400


def textured_image(seed: int = 0) -> np.ndarray:
    """Skin-like texture: smoothed noise at two scales, uint8."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)), (0, 0), 1.5)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)), (0, 0), 8)
    image = 128 + 60 * fine / fine.std() + 30 * coarse / coarse.std()
    return np.clip(image, 0, 255).astype(np.uint8)


def grid_mesh(count: int = 12, low: float = 120.0, high: float = 280.0) -> tuple[np.ndarray, np.ndarray]:
    """A square grid of points over the image centre and its triangles."""
    ticks = np.linspace(low, high, count)
    points = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    index = np.arange(count * count).reshape(count, count)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    return points, np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def motion(t: int) -> np.ndarray:
    """A smooth affine motion with subpixel steps: shift, small rotation and scale."""
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 2.0 * np.sin(t / 9), 1.0 + 0.02 * np.sin(t / 6))
    matrix[:, 2] += (3.3 * np.sin(t / 7), 2.7 * np.sin(t / 11))
    return matrix


def moved(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def landmarker(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Landmarks with a landmarker's error: smooth over the face (a random affine change of
    about 1.5 px at its edge, as MediaPipe's pose- and crop-dependent bias) plus 0.2 px noise."""
    centre = truth.mean(axis=0)
    offset = (truth - centre) @ rng.normal(0, 0.015, (2, 2)) + rng.normal(0, 1.0, 2)
    return truth + offset + rng.normal(0, 0.2, truth.shape)


def template_face(scale: float = 1300.0) -> tuple[np.ndarray, np.ndarray]:
    """The template's landmarks seen from the front (about 200 px wide) over the image centre,
    and its triangles."""
    template = load_template()
    return SIZE / 2 + scale * template.vertices[:, :2] * (1.0, -1.0), template.triangles


def test_the_points_left_to_mediapipe_are_the_eye_contours_and_the_irises():
    from mediapipe.python.solutions import face_mesh_connections as connections

    eyes = {i for edge in connections.FACEMESH_LEFT_EYE | connections.FACEMESH_RIGHT_EYE for i in edge}
    assert set(loose_points(load_template().triangles).tolist()) == eyes | set(range(468, 478))
    assert loose_points(grid_mesh()[1]).size == 0


def test_lid_margins_and_irises_follow_the_landmarker_at_once():
    """A lid margin or an iris slides over what surrounds it, so flow cannot follow it: here the
    texture moves rigidly while the eye contours and irises move 6 px down and back (a blink) in
    the truth and in the landmarker's guesses. They follow at once, never flagged covered, with
    the landmarker's smooth bias taken off by the refined skin around them."""
    image, (points, triangles) = textured_image(7), template_face()
    tracker = AppearanceTracker(triangles)
    loose = loose_points(triangles)
    rng = np.random.default_rng(8)
    errors = []
    for t in range(24):
        matrix = motion(t)
        truth = moved(points, matrix)
        truth[loose, 1] += 6.0 * np.exp(-(((t - 12) / 2.5) ** 2))
        detected = truth if t == 0 else landmarker(truth, rng)
        result = tracker.update(warp(image, matrix), detected)
        assert not result.hidden[loose].any(), t
        errors.append(np.linalg.norm(result.pixels[loose] - truth[loose], axis=1))
    errors = np.array(errors)
    assert np.median(errors) < 0.4, np.median(errors)
    assert errors[10:15].max() < 1.0, errors[10:15].max()


def test_an_eye_under_an_occluder_is_hidden_with_the_skin_around_it():
    """A hand over one eye: that eye's contour and iris are flagged hidden with the covered skin
    around them; the other eye's are not."""
    image, (points, triangles) = textured_image(9), template_face()
    tracker = AppearanceTracker(triangles)
    loose = loose_points(triangles)
    on_left = loose[points[loose, 0] > SIZE / 2]  # the subject's left eye, on the image's right
    on_right = loose[points[loose, 0] < SIZE / 2]
    left_eye = points[on_left].mean(axis=0)
    box = np.r_[left_eye - 30, left_eye + 30].astype(int)  # x0, y0, x1, y1
    for t in range(16):
        matrix = motion(t)
        frame = warp(image, matrix)
        if t >= 8:
            frame[box[1]:box[3], box[0]:box[2]] = 70
        result = tracker.update(frame, moved(points, matrix))
    assert result.hidden[on_left].mean() > 0.9, result.hidden[on_left].mean()
    assert not result.hidden[on_right].any()


def test_a_known_warp_of_a_textured_image_is_recovered_to_subpixel_accuracy():
    image, (points, triangles) = textured_image(), grid_mesh()
    tracker = AppearanceTracker(triangles)
    rng = np.random.default_rng(1)
    errors, hidden = [], []
    for t in range(40):
        matrix = motion(t)
        truth = moved(points, matrix)
        detected = truth if t == 0 else landmarker(truth, rng)
        result = tracker.update(warp(image, matrix), detected)
        errors.append(np.linalg.norm(result.pixels - truth, axis=1))
        hidden.append(result.hidden)
    errors = np.array(errors)
    assert np.mean(hidden) < 0.005, np.mean(hidden)
    assert np.median(errors) < 0.1, np.median(errors)
    assert np.percentile(errors, 99) < 0.4, np.percentile(errors, 99)


def test_a_motion_of_one_point_alone_is_followed_not_smoothed_into_its_neighbours():
    """The skin around one landmark moves 2.5 px on its own (a bump 4 px wide; the landmarks are
    14.5 px apart): the reference alignment, at the crop's full resolution, follows it to within
    0.4 px (at half resolution it stayed 0.55 px short), and the neighbours stay where they are."""
    image, (points, triangles) = textured_image(8), grid_mesh()
    tracker = AppearanceTracker(triangles)
    chosen = np.argmin(np.linalg.norm(points - (200, 200), axis=1))
    x, y = np.mgrid[0:SIZE, 0:SIZE][::-1].astype(np.float32)
    bump = np.exp(-((x - points[chosen, 0]) ** 2 + (y - points[chosen, 1]) ** 2) / (2 * 4.0 ** 2))
    moved_skin = cv2.remap(image, x - 2.5 * bump, y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    truth = points.copy()
    truth[chosen, 0] += 2.5
    tracker.update(image, points)
    for _ in range(8):
        result = tracker.update(moved_skin, truth)
    error = np.linalg.norm(result.pixels - truth, axis=1)
    assert error[chosen] < 0.4, error[chosen]
    assert np.delete(error, chosen).max() < 0.2, np.delete(error, chosen).max()


def test_points_under_an_occluder_are_hidden_and_come_back_on_the_right_spot():
    image, (points, triangles) = textured_image(2), grid_mesh()
    tracker = AppearanceTracker(triangles)
    covered_box = (150, 150, 230, 230)  # x0, y0, x1, y1 in the frame
    hidden_under, hidden_elsewhere, errors_after = [], [], []
    for t in range(45):
        matrix = motion(t)
        truth = moved(points, matrix)
        frame = warp(image, matrix)
        occluded = 12 <= t < 24
        under = ((truth >= covered_box[:2]) & (truth <= covered_box[2:])).all(axis=1)
        detected = truth.copy()
        if occluded:
            frame[covered_box[1]:covered_box[3], covered_box[0]:covered_box[2]] = 90
            detected[under] += 3.0  # a landmarker guesses the covered points, and not exactly
        result = tracker.update(frame, detected)
        if occluded and t > 12:
            inner = ((truth >= np.add(covered_box[:2], 10)) & (truth <= np.subtract(covered_box[2:], 10))).all(axis=1)
            hidden_under.append(result.hidden[inner].mean())
            far = ((truth < np.subtract(covered_box[:2], 20)) | (truth > np.add(covered_box[2:], 20))).any(axis=1)
            hidden_elsewhere.append(result.hidden[far].mean())
        if t >= 30:
            errors_after.append(np.linalg.norm(result.pixels - truth, axis=1))
            assert not result.hidden.any()
    assert np.mean(hidden_under) > 0.75, hidden_under
    assert np.mean(hidden_elsewhere) < 0.02, hidden_elsewhere
    assert np.max(errors_after) < 0.3, np.max(errors_after)


def test_points_under_an_occluder_follow_the_visible_skin_not_the_landmarker():
    """The landmarker's guesses under an occluder are pulled toward it (here 6 px to the
    right, growing as it stays); the hidden points move as their visible neighbours do."""
    image, (points, triangles) = textured_image(4), grid_mesh()
    tracker = AppearanceTracker(triangles)
    covered_box = (200, 140, 300, 260)
    errors_hidden, errors_guess = [], []
    for t in range(30):
        matrix = motion(t)
        truth = moved(points, matrix)
        frame = warp(image, matrix)
        detected = truth.copy()
        if t >= 10:
            frame[covered_box[1]:covered_box[3], covered_box[0]:covered_box[2]] = 200
            under = ((truth >= covered_box[:2]) & (truth <= covered_box[2:])).all(axis=1)
            detected[under, 0] += 6.0 + 0.2 * (t - 10)
        result = tracker.update(frame, detected)
        if t >= 12:
            chosen = result.hidden & under
            errors_hidden.append(np.linalg.norm(result.pixels[chosen] - truth[chosen], axis=1))
            errors_guess.append(np.linalg.norm(detected[chosen] - truth[chosen], axis=1))
    errors_hidden, errors_guess = np.concatenate(errors_hidden), np.concatenate(errors_guess)
    assert errors_hidden.size > 100
    assert np.median(errors_guess) > 6.0
    assert np.median(errors_hidden) < 0.3 * np.median(errors_guess), np.median(errors_hidden)


def test_a_new_track_after_a_frame_without_a_face_is_aligned_to_the_reference_at_once():
    """After a faceless frame the track starts again from the landmarker's guess (3 px of smooth
    bias, and pulled 8 px toward an occluder that covers part of the face); the reference
    alignment puts the visible points back on their skin at once, and the covered ones where
    the visible skin says they are, flagged hidden."""
    image, (points, triangles) = textured_image(5), grid_mesh()
    tracker = AppearanceTracker(triangles)
    rng = np.random.default_rng(6)
    for t in range(5):
        tracker.update(warp(image, motion(t)), moved(points, motion(t)))
    tracker.lose_track()
    matrix = motion(9)
    truth = moved(points, matrix)
    frame = warp(image, matrix)
    covered_box = (100, 100, 190, 300)
    frame[covered_box[1]:covered_box[3], covered_box[0]:covered_box[2]] = 60
    under = ((truth >= covered_box[:2]) & (truth <= covered_box[2:])).all(axis=1)
    detected = landmarker(truth, rng) + (3.0, -2.0)
    detected[under, 0] += 8.0
    result = tracker.update(frame, detected)
    error = np.linalg.norm(result.pixels - truth, axis=1)
    inner = ((truth >= np.add(covered_box[:2], 10)) & (truth <= np.subtract(covered_box[2:], 10))).all(axis=1)
    far = ((truth < np.subtract(covered_box[:2], 20)) | (truth > np.add(covered_box[2:], 20))).any(axis=1)
    assert result.hidden[inner].mean() > 0.9, result.hidden[inner].mean()
    assert result.hidden[far].mean() < 0.1, result.hidden[far].mean()
    assert np.median(error[far]) < 0.3, np.median(error[far])
    guess_error = np.linalg.norm(detected - truth, axis=1)
    assert np.median(error[inner]) < 0.2 * np.median(guess_error[inner]), np.median(error[inner])


def test_a_static_face_does_not_drift_over_a_thousand_frames():
    """The sample photo as a 1,000-frame clip with fresh sensor noise on every frame, through the
    whole backend (Face Mesh on its crop, the appearance stage): landmarks stay put."""
    from model_runtime.backends.mediapipe_dense import MediaPipeDenseBackend
    from model_runtime.intrinsics import intrinsics_for

    photo = cv2.cvtColor(cv2.imread(str(SAMPLE / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    intrinsics = intrinsics_for(photo.shape[1], photo.shape[0])
    rng = np.random.default_rng(3)
    first, drift = None, []
    with MediaPipeDenseBackend() as backend:
        for _ in range(1000):
            noisy = np.clip(photo + rng.normal(0, 2.0, photo.shape), 0, 255).astype(np.uint8)
            pixels = backend.predict(noisy, intrinsics).landmarks2d
            first = pixels if first is None else first
            drift.append(np.linalg.norm(pixels - first, axis=1))
    mean_drift = np.array(drift).mean(axis=1)
    assert mean_drift.max() < 0.2, mean_drift.max()
    assert mean_drift[-100:].mean() < mean_drift[100:200].mean() + 0.05, "the landmarks creep away"
    assert np.median(drift[-100:]) < 0.2, np.median(drift[-100:])


def frame_arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    arrays = {}
    for path in sorted((folder / FRAMES_DIR).glob("*.npz")):
        with np.load(path) as data:
            arrays[path.name] = {key: data[key] for key in data.files}
    return arrays


def test_a_resumed_capture_equals_an_uninterrupted_one(tmp_path):
    clip = SAMPLE / "single_face.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is missing: run `make sample`")
    run_capture(clip, tmp_path / "whole", CaptureOptions())
    calls = {"count": 0}

    def cancel_after_30() -> bool:
        calls["count"] += 1
        return calls["count"] > 30

    with pytest.raises(Cancelled):
        run_capture(clip, tmp_path / "resumed", CaptureOptions(), should_cancel=cancel_after_30)
    interrupted = len(CaptureFolder(tmp_path / "resumed").finished_indices())
    assert 0 < interrupted < 72
    summary = run_capture(clip, tmp_path / "resumed", CaptureOptions())
    assert summary.computed == 72 - interrupted

    whole, resumed = frame_arrays(tmp_path / "whole"), frame_arrays(tmp_path / "resumed")
    assert whole.keys() == resumed.keys() and len(whole) == 72
    for name, arrays in whole.items():
        assert arrays.keys() == resumed[name].keys(), name
        for key, value in arrays.items():
            np.testing.assert_array_equal(resumed[name][key], value, err_msg=f"{name} {key}")


def test_a_folder_of_frames_is_tracked_as_a_sequence(tmp_path):
    clip = SAMPLE / "single_face.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is missing: run `make sample`")
    from model_runtime.frames import open_source

    frames = tmp_path / "plate"
    frames.mkdir()
    with open_source(clip) as source:
        for frame in source.frames(0, 3):
            cv2.imwrite(str(frames / f"plate.{frame.index:04d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    run_capture(frames, tmp_path / "capture", CaptureOptions())
    backend = CaptureFolder(tmp_path / "capture").manifest["backend"]
    assert backend["static_images"] is False and backend["appearance"] is True
