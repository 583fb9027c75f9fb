"""The network backend's appearance stage (model_runtime/map_fusion.py): a textured image moved by
a known warp, with a noisy canonical map per frame, must come out closer to the true canonical map,
without drift, keep the current prediction under an occluder, and resume exactly; then the backend
path end to end on tiny random weights."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.capture_folder import CaptureFolder, frame_path
from model_runtime.contract import FrameMaps
from model_runtime.map_fusion import MapFusion, MapState, state_from_maps
from tests.fixtures.network_weights import write_random_weights

HEIGHT, WIDTH = 144, 240
NOISE = 0.002  # canonical noise per coordinate, metres
FACE = (slice(8, -8), slice(40, -40))  # rows, columns: the pixels that hold a face coordinate
OCCLUDER = (slice(50, 90), slice(90, 150))
OCCLUDER_OFFSET = 0.05  # what the network would predict on a hand: far from the face's coordinates


def texture(seed: int = 0, size: int = 520) -> np.ndarray:
    """A skin-like random texture: blurred noise over most of the grey range."""
    blurred = cv2.GaussianBlur(np.random.default_rng(seed).random((size, size)).astype(np.float32), (0, 0), 2.0)
    return (blurred - blurred.min()) / np.ptp(blurred) * 200 + 25


def source_coordinates(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Where frame t's pixels come from in the texture: a rotation, scale and shift that change
    smoothly with t (up to about 4 pixels a frame)."""
    angle, scale = 0.06 * np.sin(t / 9), 1 + 0.06 * np.sin(t / 13)
    shift_x, shift_y = 120 + 40 * np.sin(t / 11), 120 + 30 * np.sin(t / 7)
    columns, rows = np.meshgrid(np.arange(WIDTH) - WIDTH / 2, np.arange(HEIGHT) - HEIGHT / 2)
    u = scale * (np.cos(angle) * columns - np.sin(angle) * rows) + WIDTH / 2 + shift_x
    v = scale * (np.sin(angle) * columns + np.cos(angle) * rows) + HEIGHT / 2 + shift_y
    return u.astype(np.float32), v.astype(np.float32)


def true_canonical(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The canonical coordinate of a texture point: about 1 mm per texture pixel, with relief."""
    return np.stack([u * 1e-3, v * 1e-3, 0.01 * np.sin(u / 40) * np.cos(v / 30)], -1).astype(np.float32)


def sequence(frames: int, occluded: range = range(0)):
    """(grey image, true canonical map, noisy prediction) per frame; in the ``occluded`` frames a
    static occluder of its own texture covers OCCLUDER and the prediction there is far off."""
    skin, occluder = texture(0), texture(1)
    rng = np.random.default_rng(2)
    for t in range(frames):
        u, v = source_coordinates(t)
        image = cv2.remap(skin, u, v, cv2.INTER_LINEAR)
        truth = true_canonical(u, v)
        prediction = truth + rng.normal(0, NOISE, truth.shape).astype(np.float32)
        if t in occluded:
            image[OCCLUDER] = occluder[OCCLUDER]
            prediction[OCCLUDER] += OCCLUDER_OFFSET
        yield image.astype(np.uint8), truth, prediction


def run_fusion(frames: int, occluded: range = range(0), fusion: MapFusion | None = None):
    """Per frame: (truth, prediction, refined map)."""
    fusion = fusion or MapFusion()
    confidence, valid = np.full((HEIGHT, WIDTH), 0.9, np.float32), np.zeros((HEIGHT, WIDTH), bool)
    valid[FACE] = True
    state, results = None, []
    for gray, truth, prediction in sequence(frames, occluded):
        refined = fusion.refine(state, gray, prediction, confidence, valid)
        state = MapState(gray, refined, confidence, valid)
        results.append((truth, prediction, refined))
    return results


def error(a: np.ndarray, b: np.ndarray, region=FACE) -> float:
    """Mean distance between two canonical maps over the face."""
    return float(np.linalg.norm(a[region] - b[region], axis=-1).mean())


def test_the_refined_map_is_closer_to_the_truth_and_does_not_drift():
    results = run_fusion(200)
    raw = np.array([error(prediction, truth) for truth, prediction, _ in results])
    refined = np.array([error(refined, truth) for truth, _, refined in results])
    assert refined[0] == raw[0]  # the first frame has no history
    assert refined[10:].mean() < 0.6 * raw[10:].mean()
    # A bounded-memory filter: the last frames are as good as the early ones.
    assert refined[-50:].mean() < 1.1 * refined[10:60].mean()
    # No bias creeps in: the mean signed error stays at the noise's scale over the whole clip.
    bias = np.mean([np.abs((refined - truth)[FACE].mean(axis=(0, 1))).max() for truth, _, refined in results[-50:]])
    assert bias < 0.2 * NOISE


def test_the_current_prediction_stands_under_an_occluder_and_after_it():
    occluded = range(30, 40)
    results = run_fusion(45, occluded)
    inside = (slice(OCCLUDER[0].start + 4, OCCLUDER[0].stop - 4), slice(OCCLUDER[1].start + 4, OCCLUDER[1].stop - 4))
    truth, prediction, refined = results[occluded.start]
    # The carried face coordinates (OCCLUDER_OFFSET away) are not blended into the occluder's.
    assert error(refined, prediction, inside) < 0.05 * OCCLUDER_OFFSET
    # When it goes, the uncovered skin takes the current prediction, not the occluder's coordinates.
    truth, prediction, refined = results[occluded.stop]
    assert error(refined, truth, inside) < 1.5 * error(prediction, truth, inside)
    truth, _, refined = results[-1]
    assert error(refined, truth, inside) < 0.8 * error(results[-1][1], truth, inside)


def test_the_filter_forgets_and_never_copies_the_previous_map():
    with pytest.raises(ValueError, match="memory"):
        MapFusion(memory=1.0)
    truth, prediction, refined = run_fusion(12)[-1]
    weight = np.linalg.norm(refined - prediction, axis=-1) / np.maximum(np.linalg.norm(truth - prediction, axis=-1), 1e-9)
    assert 0 < np.median(weight) < 1
    # Maps too small for optical flow keep their prediction.
    tiny, flat = np.zeros((10, 10, 3), np.float32), np.full((10, 10), 0.9, np.float32)
    state = MapState(np.zeros((10, 10), np.uint8), tiny + 1, flat, np.ones((10, 10), bool))
    assert MapFusion().refine(state, state.gray, tiny, flat, state.valid) is tiny


def as_frame_maps(canonical: np.ndarray, confidence: float, frame_size: tuple[int, int]) -> FrameMaps:
    """Maps as a backend emits them (float32), at twice the map resolution and cropped to a window."""
    width, height = frame_size
    full = cv2.resize(canonical, (width, height), interpolation=cv2.INTER_LINEAR)
    window = (6, 4, width - 10, height - 2)
    x0, y0, x1, y1 = window
    shape = (y1 - y0, x1 - x0)
    return FrameMaps(
        depth=np.ones(shape, np.float32), canonical=full[y0:y1, x0:x1], depth_confidence=np.ones(shape, np.float32),
        canonical_confidence=np.full(shape, confidence, np.float32), mask=np.ones(shape, bool),
        intrinsics=np.eye(3), frame_size=frame_size, window=window,
    )


def test_the_state_read_back_from_stored_maps_continues_exactly(tmp_path):
    """What a resume does: the state derived from the maps as the capture folder stores them
    (float16, frame resolution, cropped) gives the same next frame as the run that emitted them."""
    frames = list(sequence(6))
    confidence, valid = np.full((HEIGHT, WIDTH), 0.9, np.float32), np.ones((HEIGHT, WIDTH), bool)
    frame_size = (2 * WIDTH, 2 * HEIGHT)
    fusion, state, refined, emitted = MapFusion(), None, [], []
    for gray, _, prediction in frames:
        refined.append(fusion.refine(state, gray, prediction, confidence, valid))
        emitted.append(as_frame_maps(refined[-1], 0.9, frame_size))
        state = state_from_maps(gray, emitted[-1])
    stored = emitted[3]
    np.savez(tmp_path / "frame.npz", canonical=stored.canonical.astype(np.float16),
             confidence=stored.canonical_confidence.astype(np.float16))
    with np.load(tmp_path / "frame.npz") as data:
        stored.canonical, stored.canonical_confidence = (data[name].astype(np.float32) for name in ("canonical", "confidence"))
    resumed = state_from_maps(frames[3][0], stored)
    gray, _, prediction = frames[4]
    np.testing.assert_array_equal(MapFusion().refine(resumed, gray, prediction, confidence, valid), refined[4])
    # The border of the window holds no face coordinate to carry.
    assert not resumed.valid[0].any() and resumed.valid[HEIGHT // 2, WIDTH // 2]
    assert state_from_maps(gray, FrameMaps.empty(np.eye(3), frame_size)) is None


# The network backend on tiny random weights: every pixel counts as face, no MediaPipe alignment;
# one frame at a time, so that the network's own output does not depend on where a run starts.
NETWORK_OPTIONS = {"size": "small", "resolution": 84, "mode": "single", "mask_confidence": 0.0,
                   "align_to_template": False}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("weights"))


def network_capture(clip, weights, folder, appearance: bool = True, warnings: list | None = None,
                    frames: str | None = "0:5", **backend_options):
    options = CaptureOptions(frames=frames, backend="faceanything", device="cpu", checkpoint=str(weights),
                             appearance=appearance, backend_options={**NETWORK_OPTIONS, **backend_options})
    warn = None if warnings is None else lambda frame, code, text: warnings.append((frame, code, text))
    return run_capture(clip, folder, options, warn=warn)


def canonical_maps(folder) -> list[np.ndarray]:
    capture = CaptureFolder(folder)
    return [capture.frame(i).canonical for i in range(len(capture.frame_numbers))]


def test_the_network_backend_refines_its_maps_and_resumes_exactly(face_clip, weights, tmp_path):
    network_capture(face_clip, weights, tmp_path / "on")
    network_capture(face_clip, weights, tmp_path / "off", appearance=False)
    on, off = canonical_maps(tmp_path / "on"), canonical_maps(tmp_path / "off")
    assert CaptureFolder(tmp_path / "on").manifest["backend"]["appearance"] is True
    np.testing.assert_array_equal(on[0], off[0])  # the first frame has no history
    assert all(a.shape == b.shape and np.isfinite(a).all() for a, b in zip(on, off))
    assert all(np.abs(a - b).max() > 0 for a, b in zip(on[1:], off[1:]))

    # A capture killed after frame 2: its later frames are computed again from the stored ones.
    shutil.copytree(tmp_path / "on", tmp_path / "resumed")
    for index in (3, 4):
        frame_path(tmp_path / "resumed", index).unlink()
    warnings = []
    summary = network_capture(face_clip, weights, tmp_path / "resumed", warnings=warnings)
    assert summary.computed == 2 and warnings == []
    for uninterrupted, resumed in zip(on, canonical_maps(tmp_path / "resumed")):
        np.testing.assert_array_equal(resumed, uninterrupted)


# Windows of 3 frames, 1 shared: window 0 holds capture positions 0-2, window 1 positions 2-4
# (emits 3 and 4), window 2 positions 4-6 (emits 5 and 6).
WINDOWS = {"mode": "window", "window": 3, "overlap": 1}


def all_maps(folder) -> list[FrameMaps]:
    capture = CaptureFolder(folder)
    return [capture.frame(i) for i in range(len(capture.frame_numbers))]


def assert_same_frames(resumed_folder, uninterrupted_folder) -> None:
    resumed, uninterrupted = all_maps(resumed_folder), all_maps(uninterrupted_folder)
    assert len(resumed) == len(uninterrupted)
    for index, (a, b) in enumerate(zip(resumed, uninterrupted)):
        assert a.has_face == b.has_face and a.window == b.window, f"frame {index}"
        for name in ("depth", "canonical", "depth_confidence", "canonical_confidence", "mask"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"frame {index} {name}")


def resume_after_kill(uninterrupted, folder, first_missing: int) -> None:
    """A copy of a finished capture as a kill after ``first_missing`` frames leaves it."""
    shutil.copytree(uninterrupted, folder)
    for index in range(first_missing, len(CaptureFolder(folder).frame_numbers)):
        frame_path(folder, index).unlink()


@pytest.fixture(scope="module")
def window_captures(weights, tmp_path_factory):
    """Uninterrupted window-mode captures of the sample clip's first 7 frames, with the appearance
    stage on and off."""
    from tests.conftest import sample_file

    root = tmp_path_factory.mktemp("windows")
    for appearance in (True, False):
        network_capture(sample_file("single_face.mp4"), weights, root / str(appearance), appearance, frames="1:7",
                        **WINDOWS)
    return root


@pytest.mark.parametrize("appearance", [True, False], ids=["appearance", "no-appearance"])
@pytest.mark.parametrize("first_missing, computed", [(3, 4), (4, 4), (5, 2)],
                         ids=["window-start", "window-middle", "last-window"])
def test_a_window_mode_capture_resumes_exactly(face_clip, weights, window_captures, tmp_path, appearance,
                                               first_missing, computed):
    """Killed after ``first_missing`` frames and run again, the capture restarts at the window
    that emits that frame, feeding it its overlap frame again, and writes what an uninterrupted
    capture wrote: the frames attend to the same frames and the depth tie reads the same maps."""
    uninterrupted = window_captures / str(appearance)
    resume_after_kill(uninterrupted, tmp_path / "resumed", first_missing)
    warnings = []
    summary = network_capture(face_clip, weights, tmp_path / "resumed", appearance, warnings, frames="1:7", **WINDOWS)
    assert summary.computed == computed and warnings == []
    assert_same_frames(tmp_path / "resumed", uninterrupted)


def write_image_sequence(clip, folder, unreadable: int):
    """The clip's first 7 frames as plate.0001.png..., the one at position ``unreadable`` broken."""
    from tests.conftest import first_frames

    folder.mkdir()
    for position, image in enumerate(first_frames(clip, 7)):
        path = folder / f"plate.{position + 1:04d}.png"
        if position == unreadable:
            path.write_bytes(b"\x89PNG broken")
        else:
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.parametrize("unreadable, first_missing", [(1, 3), (2, 4), (4, 6)],
                         ids=["gap-in-window-0", "overlap-frame-unreadable", "gap-at-the-resume-window"])
def test_an_unreadable_frame_keeps_its_place_in_the_window_grid_and_the_resume_is_exact(
        face_clip, weights, tmp_path, unreadable, first_missing):
    """An unreadable frame leaves a gap in its window (the later windows do not shift) and is fed
    to no window, also when a resume feeds its window's overlap again."""
    plates = write_image_sequence(face_clip, tmp_path / "plates", unreadable)
    warnings = []
    network_capture(plates, weights, tmp_path / "uninterrupted", warnings=warnings, frames=None, **WINDOWS)
    assert [(frame, code) for frame, code, _ in warnings] == [(unreadable, "unreadable_frame")]
    maps = all_maps(tmp_path / "uninterrupted")
    assert [m.has_face for m in maps] == [position != unreadable for position in range(7)]
    resume_after_kill(tmp_path / "uninterrupted", tmp_path / "resumed", first_missing)
    network_capture(plates, weights, tmp_path / "resumed", frames=None, **WINDOWS)
    assert_same_frames(tmp_path / "resumed", tmp_path / "uninterrupted")


def test_after_an_unreadable_frame_the_next_one_starts_without_history(face_clip, weights):
    """The capture calls ``lose_track`` where it skips an unreadable frame: the next frame has no
    history, as in a capture resumed right after the unreadable one."""
    from model_runtime.backends.faceanything import FaceAnythingBackend
    from tests.conftest import first_frames

    frames = first_frames(face_clip, 3)

    def run(appearance: bool) -> list[FrameMaps]:
        backend = FaceAnythingBackend(weights, device="cpu", appearance=appearance, **NETWORK_OPTIONS)

        def stream():
            yield frames[0]
            backend.lose_track()
            yield from frames[1:]

        return list(backend.predict_frames(stream(), None))

    on, off = run(True), run(False)
    np.testing.assert_array_equal(on[1].canonical, off[1].canonical)
    assert np.abs(on[2].canonical - off[2].canonical).max() > 0
