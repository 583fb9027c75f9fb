"""The Face Anything backend: a predictor between the runtime and the network.

It owns what the network file does not: device choice (CUDA, then Apple MPS, then CPU), eval
mode and no_grad, mixed precision on a GPU (bf16, else fp16, for the backbone; heads in fp32),
the release's preprocessing, windows over long clips, and turning raw outputs into `FrameMaps`.

Preprocessing as in the release: whole RGB frames, resized so the longest side is
``resolution`` (504) and each side is the nearest multiple of 14, ImageNet mean/std.

Windows: ``mode="window"`` runs ``window`` frames at once (they attend to each other). Windows lie
on a fixed grid of capture positions: window k covers positions [k*S, k*S + window), S = window -
overlap, and every frame is emitted once, by the first window that holds it, so results stream
with a delay of at most one window and memory is bounded by the window, never the clip. An
unreadable frame keeps its position (``lose_track``): it leaves a gap in its window instead of
shifting the later ones, and a window without a frame is skipped. A window's first ``overlap``
positions, emitted by earlier windows, tie its depth scale to theirs: the median depth ratio, over
pixels that are face in both, between those frames' maps as the capture folder stores them (depth
rounded as stored, sampled back at network resolution) and this window's predictions of them; a
window whose overlap shows no face takes its own scale, as the first window does.
``mode="single"`` runs each frame alone (a window of one, no overlap).

Resuming: a frame depends on the frames of its window and, through the tie, on the stored maps
of the frames before it, never on where a run started. So a capture resumed at a missing frame
(`resume_window`) starts again at the start of the window that emits it, feeds that window's
overlap frames again with their stored maps (`continue_windows`) without emitting them, and
computes every frame from there on exactly as an uninterrupted capture did (with the same
template alignment: the one the first run fitted and cached).

Outputs, per frame (see `contract.FrameMaps`):

* intrinsics: solved from the predicted ray map (``network.rays``; the runtime's default field of
  view for a frame whose rays describe no pinhole camera). When the caller gives
  intrinsics they are used instead and depth is multiplied by ``f_given / f_predicted``: the face
  keeps the lateral size the network saw, i.e. a longer lens puts the same face further away.
* canonical: with ``align_to_template`` (default) mapped into the template space
  (``contract.CANONICAL_SPACE_ID``) by a `CanonicalAlignment` fitted once per checkpoint (cached
  by the weights' sha256; fitted from the first window of the first clip, where MediaPipe finds
  the 478 landmarks); otherwise the release's own space (``RELEASE_SPACE_ID``).
* depth: metres when aligned: each window's scale is the median over its frames of the
  similarity scale between template-space canonical points (metres) and camera-space points,
  unless its overlap ties it to the frames before it. Without the alignment there is no metric
  reference and depth stays in the network's units (``describe()["depth_units"]``).
* confidences: the network's ``1 + exp(x)`` confidences mapped to [0, 1) by ``1 - 1/c``.
* mask: the release removes the background with a video matting model we do not have; the face
  mask here is canonical confidence >= ``mask_confidence`` and, in the template space, a
  canonical coordinate inside the template's bounding box grown by ``MASK_MARGIN_M`` (hair, neck
  and background have coordinates outside the face). Maps are cropped to the mask's box.
* head_pose: in the template space, the rigid canonical -> camera fit of the frame's face pixels.

Appearance stage (``appearance``, on by default): in a sequence, each frame's canonical map (at
network resolution) is refined with the previous frame's, carried by optical flow
(``model_runtime/map_fusion.py``), so a point of the skin keeps its canonical coordinate and the
map stops flickering. The state handed from frame to frame is derived from the maps as emitted,
rounded as the capture folder stores them, so a capture resumed after a kill (``resume_tracking``,
given the stored maps) continues the stage exactly as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version as _package_version
from pathlib import Path

import cv2
import numpy as np
import torch

from . import backend_version
from ..capture_folder import stored_depth
from ..contract import CANONICAL_SPACE_ID, FrameMaps, crop_window
from ..errors import InputError, UserError
from ..intrinsics import intrinsics_for
from ..map_fusion import (MapFusion, MapState, face_pixels, gray_at_map_size, sampler_at_map_pixels,
                          state_from_maps)
from ..network.canonical_alignment import (
    MIN_PAIRS,
    RELEASE_SPACE_ID,
    CanonicalAlignment,
    collect_pairs,
    fit_alignment,
    sample_bilinear,
    similarity_fit,
)
from ..network.checkpoint import load_network, weights_sha256
from ..network.model import PATCH_SIZE
from ..network.rays import intrinsics_from_rays
from ..template import load_template

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MASK_MARGIN_M = 0.01
MODES = ("window", "single")
# Fewer face pixels than this in a frame (or in both copies of the overlap) give no scale.
_MIN_SCALE_PIXELS = 64
_MAX_FIT_POINTS = 4000

# image (H, W, 3) RGB, intrinsics (3, 3) -> (landmarks2d (478, 2) pixels, visible (478,) bool), or None
# without a face. "Visible": the landmark faces the camera, so the pixel shows that point.
LandmarkDetector = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]
# A landmark counts as visible when its normal is within 75 degrees of the direction to the camera.
_MIN_FACING_COS = float(np.cos(np.radians(75.0)))


@dataclass
class FramePrediction:
    """One frame at network resolution, before resizing to the frame."""

    depth: np.ndarray  # (h, w) network units, focal-corrected when intrinsics were given
    depth_confidence: np.ndarray  # (h, w) [0, 1)
    canonical: np.ndarray  # (h, w, 3) release space until aligned
    canonical_confidence: np.ndarray  # (h, w) [0, 1)
    intrinsics: np.ndarray  # (3, 3) frame pixels
    frame_size: tuple[int, int]  # (width, height)
    mask: np.ndarray | None = None  # (h, w) face pixels, set once canonical is final


class FaceAnythingBackend:
    name = "faceanything"

    def __init__(
        self,
        checkpoint: str | Path | None,
        size: str | None = "giant",
        device: str = "auto",
        window: int = 8,
        overlap: int = 2,
        mode: str = "window",
        resolution: int = 504,
        align_to_template: bool = True,
        mask_confidence: float = 0.5,
        alignment_cache: str | Path | None = None,
        landmark_detector: LandmarkDetector | None = None,
        appearance: bool = True,
    ):
        """``checkpoint``: the released checkpoint.pt or a .safetensors converted from it.
        ``size``: the network size the weights must have (None: whatever they have).
        ``alignment_cache``: folder of fitted alignments (default
        ``$XDG_CACHE_HOME/faceanything/alignments``). ``landmark_detector``: finds the 478
        template landmarks for fitting the alignment (default: the MediaPipe backend).
        ``appearance``: refine each frame's canonical map with the previous one (module docstring)."""
        if checkpoint is None:
            raise UserError(
                "the faceanything backend needs the network's weights",
                "Give --checkpoint with the released checkpoint.pt, or the .safetensors made from it by "
                "`python -m model_runtime convert`.",
                code="bad_checkpoint",
            )
        self.window, self.overlap = _check_window(mode, window, overlap)
        if resolution < PATCH_SIZE:
            raise UserError(
                f"resolution {resolution} is too small", f"Use at least {PATCH_SIZE}; the release uses 504."
            )
        self.mode, self.resolution, self.mask_confidence = mode, int(resolution), float(mask_confidence)
        self.checkpoint = Path(checkpoint)
        self.device = choose_device(device)
        self.autocast_dtype = _autocast_dtype(self.device)
        network, self.load_report = load_network(self.checkpoint, size)
        self.network = network.to(self.device)
        self.weights_sha256 = weights_sha256(self.checkpoint)
        self.align_to_template = align_to_template
        self._alignment_path = Path(alignment_cache or _default_cache()) / f"{self.weights_sha256}.npz"
        self.alignment = (
            CanonicalAlignment.load(self._alignment_path, self.weights_sha256) if align_to_template else None
        )
        self._landmark_detector = landmark_detector
        self.appearance = bool(appearance)
        self._fusion = MapFusion() if appearance else None
        self._state: MapState | None = None  # the previous frame's, for the appearance stage
        self._position = 0  # the capture position of the next frame predict_frames takes
        self._lost_at: set[int] = set()  # positions of frames that start without history
        # Where the next predict_frames starts: (position, frames fed again), see continue_windows.
        self._start: tuple[int, list[tuple[np.ndarray | None, FrameMaps]]] = (0, [])
        self.canonical_space = CANONICAL_SPACE_ID if align_to_template else RELEASE_SPACE_ID
        self.version = (f"faceanything-net {backend_version('faceanything')} "
                        f"(depth-anything-3 {_package_version('depth-anything-3')})")
        if align_to_template:
            template = load_template()
            self._template = template
            low, high = template.vertices.min(axis=0), template.vertices.max(axis=0)
            self._canonical_bounds = (low - MASK_MARGIN_M, high + MASK_MARGIN_M)

    def describe(self) -> dict:
        return {
            "size": self.load_report.size,
            "weights": str(self.checkpoint),
            "weights_sha256": self.weights_sha256,
            "weights_format": self.load_report.file_format,
            "device": str(self.device),
            "dtype": str(self.autocast_dtype or torch.float32).removeprefix("torch."),
            "mode": self.mode,
            "window": self.window,
            "overlap": self.overlap,
            "resolution": self.resolution,
            "mask_confidence": self.mask_confidence,
            "depth_units": "metres" if self.align_to_template else "network",
            "alignment": self.alignment.summary() if self.alignment else None,
            "appearance": self.appearance,
        }

    @property
    def depends_on_history(self) -> bool:
        """Whether a frame's maps depend on the frames before it: the appearance stage, and in
        window mode the window grid and the depth tie. A resumed capture then starts where
        `resume_window` says and hands over the frames before it (`continue_windows`,
        `resume_tracking`)."""
        return self.appearance or self.window > 1

    def resume_window(self, first_missing: int) -> tuple[int, int]:
        """(feed_from, emit_from) of a capture resumed at capture position ``first_missing``:
        the window that emits it starts at feed_from; its frames before emit_from, which earlier
        windows emitted and the capture stored, are fed again (`continue_windows`) but not emitted,
        and every frame from emit_from on is computed again."""
        step = self.window - self.overlap
        window = max(0, (first_missing - self.overlap) // step)
        return window * step, (window * step + self.overlap if window else 0)

    def continue_windows(self, feed_from: int, fed_again: list[tuple[np.ndarray | None, FrameMaps]]) -> None:
        """Start the next `predict_frames` at capture position ``feed_from`` (from
        `resume_window`), with the frames from there to emit_from as (RGB image, or None where
        unreadable; its maps as stored): they are fed to their window again and tie its depth
        scale, as their maps did in the uninterrupted capture, and are not emitted."""
        self._start = (feed_from, list(fed_again))

    def resume_tracking(self, previous: tuple[np.ndarray, FrameMaps] | None,
                        reference: tuple[np.ndarray, FrameMaps] | None = None) -> None:
        """Continue a sequence whose earlier frames another run computed: (RGB image, maps as
        stored) of the frame just before the next one, or None (no such frame, or no face in it).
        ``reference`` (the first frame with a face) is not needed here."""
        if self._fusion is None:
            return
        self._state = None
        if previous is not None:
            image, maps = previous
            _check_image(image, 0, None)
            size = network_input_size(image.shape[1], image.shape[0], self.resolution)
            self._state = state_from_maps(gray_at_map_size(image, size), maps)

    def lose_track(self) -> None:
        """The frame at the next position is unreadable: the stream moves past it (it keeps its
        place in its window) and the frame after it starts without history, as in a capture
        resumed right after it."""
        self._position += 1
        self._lost_at.add(self._position)

    def predict_frames(self, images: Iterable[np.ndarray], intrinsics: np.ndarray | None) -> Iterator[FrameMaps]:
        """One FrameMaps per (H, W, 3) uint8 RGB image, in order, streamed window by window.
        ``intrinsics``: (3, 3) for every frame, or None to solve them from the predicted rays.
        The images are at capture positions from 0 on (or from where `continue_windows` said),
        `lose_track` passing over an unreadable one."""
        given = _check_intrinsics(intrinsics)
        (start, fed_again), self._start = self._start, (0, [])
        self._position, self._lost_at = start + len(fed_again), set()
        emit_from = self._position
        # The maps as stored of the positions the next window overlaps (None: no face).
        stored = {start + i: (maps if maps.has_face else None) for i, (_, maps) in enumerate(fed_again)}
        fed = [(start + i, image) for i, (image, _) in enumerate(fed_again) if image is not None]
        step = self.window - self.overlap
        for window_start, entries in self._grid_windows(images, start, fed):
            positions = [position for position, _ in entries]
            if positions[-1] >= emit_from:
                images_now = [image for _, image in entries]
                emitted = self._run_window(images_now, given, positions, emit_from, stored)
                for position, maps in zip([p for p in positions if p >= emit_from], emitted):
                    if position >= window_start + step:
                        stored[position] = _maps_as_stored(maps)
                    yield maps
            emit_from = max(emit_from, window_start + self.window)
            stored = {position: maps for position, maps in stored.items() if position >= window_start + step}

    def _grid_windows(self, images: Iterable[np.ndarray], start: int, fed: list[tuple[int, np.ndarray]]
                      ) -> Iterator[tuple[int, list[tuple[int, np.ndarray]]]]:
        """(first position, its (position, image) pairs) of each window of the grid from the one
        at ``start`` on, as soon as all its positions have passed; windows without an image are
        left out. ``fed``: the pairs fed again at the start."""
        step, shape = self.window - self.overlap, None
        window_start, entries = start, list(fed)
        for position, image in fed:
            shape = _check_image(image, position, shape)

        def passed(position: int) -> Iterator[tuple[int, list[tuple[int, np.ndarray]]]]:
            """The windows that end at or before ``position``."""
            nonlocal window_start, entries
            while window_start + self.window <= position:
                if entries:
                    yield window_start, entries
                window_start += step
                entries = [entry for entry in entries if entry[0] >= window_start]

        for image in images:
            yield from passed(self._position)  # windows whose last positions were unreadable
            shape = _check_image(image, self._position, shape)
            entries.append((self._position, image))
            self._position += 1
            yield from passed(self._position)
        yield from passed(self._position)
        if entries:
            yield window_start, entries

    def predict(self, image_rgb: np.ndarray, intrinsics: np.ndarray | None) -> FrameMaps:
        """One frame on its own (as in ``mode="single"``, without the appearance stage)."""
        _check_image(image_rgb, 0, None)
        return next(self._run_window([image_rgb], _check_intrinsics(intrinsics)))

    def close(self) -> None:
        self.network = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def infer(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw network outputs (float32 numpy, leading axis = frame) for frames that attend to
        each other: the window step of `predict_frames`, before any post-processing."""
        height, width = images[0].shape[:2]
        size = network_input_size(width, height, self.resolution)
        batch = torch.from_numpy(np.stack([preprocess(image, size) for image in images]))[None].to(self.device)
        with torch.no_grad():
            outputs = self.network(batch, self.autocast_dtype)
        return {key: value[0].float().cpu().numpy() for key, value in outputs.items()}

    def _run_window(self, images, given, positions: list[int] | None = None, emit_from: int = 0,
                    stored: dict[int, FrameMaps | None] | None = None) -> Iterator[FrameMaps]:
        """Predict frames that attend to each other and emit those at positions from ``emit_from``
        on. ``positions``: the images' capture positions in a sequence (the appearance stage runs;
        the frames before ``emit_from`` tie the depth scale to ``stored``, their maps as stored),
        None for frames on their own."""
        raw = self.infer(images)
        height, width = images[0].shape[:2]
        predictions = [frame_prediction(raw, i, (width, height), given) for i in range(len(images))]
        if self.align_to_template and self.alignment is None:
            self.alignment = self._fit_alignment(images, predictions)
            self.alignment.save(self._alignment_path, self.weights_sha256)
        for prediction in predictions:
            self._finish_canonical(prediction)
        sequence = positions is not None
        positions = positions if sequence else list(range(len(images)))
        overlapped = [(stored[position], prediction)
                      for position, prediction in zip(positions, predictions) if position < emit_from]
        scale = self._window_scale(predictions, overlapped)
        for prediction in predictions:
            prediction.depth = prediction.depth * np.float32(scale)
        for image, position, prediction in zip(images, positions, predictions):
            if position < emit_from:
                continue
            if not sequence or self._fusion is None:
                yield self._frame_maps(prediction, (width, height))
            else:
                yield self._refined_frame_maps(image, prediction, position)

    def _refined_frame_maps(self, image: np.ndarray, prediction: FramePrediction, position: int) -> FrameMaps:
        """The frame's maps with its canonical map refined by the appearance stage; keeps the
        state for the next frame."""
        if position in self._lost_at:
            self._state = None
        height, width = prediction.depth.shape
        gray = gray_at_map_size(image, (width, height))
        prediction.canonical = self._fusion.refine(
            self._state, gray, prediction.canonical, prediction.canonical_confidence, prediction.mask
        )
        maps = self._frame_maps(prediction, prediction.frame_size)
        self._state = state_from_maps(gray, maps)
        return maps

    def _finish_canonical(self, prediction: FramePrediction) -> None:
        """Map canonical coordinates to the output space and set the face mask (network size)."""
        confident = prediction.canonical_confidence >= self.mask_confidence
        if self.alignment is None:
            prediction.mask = confident & (prediction.depth > 0)
            return
        # Map a ring around the confident pixels too, so resizing to the frame blends only
        # mapped values at the mask border.
        around = cv2.dilate(confident.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        canonical = np.zeros_like(prediction.canonical)
        canonical[around] = self.alignment.apply(prediction.canonical[around]).astype(np.float32)
        prediction.canonical = canonical
        prediction.mask = confident & self._in_bounds(canonical) & (prediction.depth > 0)

    def _in_bounds(self, canonical: np.ndarray) -> np.ndarray:
        low, high = self._canonical_bounds
        return np.all((canonical >= low) & (canonical <= high), axis=-1)

    def _window_scale(self, predictions: list[FramePrediction],
                      overlapped: list[tuple[FrameMaps | None, FramePrediction]]) -> float:
        """The factor taking the window's depth to the output units (see module docstring).
        ``overlapped``: (maps as stored, or None without a face; this window's prediction) of the
        frames earlier windows emitted."""
        ratios = []
        for earlier, now in overlapped:
            if earlier is None:
                continue
            sample = sampler_at_map_pixels(earlier, now.depth.shape[::-1])
            both = face_pixels(sample, earlier.mask) & now.mask
            if np.count_nonzero(both) >= _MIN_SCALE_PIXELS:
                ratios.append(sample(earlier.depth)[both] / now.depth[both])
        if ratios:
            return float(np.median(np.concatenate(ratios)))
        if self.alignment is None:
            return 1.0
        scales = [s for s in (metres_per_depth_unit(p) for p in predictions) if s is not None]
        return float(np.median(scales)) if scales else 1.0

    def _fit_alignment(self, images: list[np.ndarray], predictions: list[FramePrediction]) -> CanonicalAlignment:
        if self._landmark_detector is not None:
            return self._fit_alignment_with(self._landmark_detector, images, predictions)
        from .mediapipe_dense import MediaPipeDenseBackend

        mediapipe = MediaPipeDenseBackend()
        try:
            return self._fit_alignment_with(
                lambda image, k: _mediapipe_landmarks(mediapipe, image, k), images, predictions
            )
        finally:
            mediapipe.close()

    def _fit_alignment_with(self, detect: LandmarkDetector, images, predictions) -> CanonicalAlignment:
        """Pairs (network canonical at a landmark's pixel, template vertex) over the window's
        frames where the landmarks are found and face the camera, then the fitted warp."""
        template = self._template
        observations = []
        for image, prediction in zip(images, predictions):
            found = detect(image, prediction.intrinsics)
            if found is None:
                continue
            landmarks, visible = found
            height, width = image.shape[:2]
            net_height, net_width = prediction.depth.shape
            at_network = (landmarks + 0.5) * [net_width / width, net_height / height] - 0.5
            canonical, inside = sample_bilinear(prediction.canonical, at_network)
            confidence, _ = sample_bilinear(prediction.canonical_confidence[..., None], at_network)
            seen = inside & visible & (confidence[:, 0] >= self.mask_confidence)
            observations.append((np.flatnonzero(seen), canonical[seen]))
        source, target, _ = collect_pairs(observations, template.vertices)
        if len(source) < MIN_PAIRS:
            raise UserError(
                f"cannot fit the canonical alignment of {self.checkpoint.name}: only {len(source)} face landmarks "
                f"were seen confidently in the first {len(images)} frames (at least {MIN_PAIRS} are needed)",
                "Start the capture on frames where the face is clearly visible (it is needed once per checkpoint), "
                "or capture in dense mode without template alignment.",
                code="alignment_failed",
            )
        return fit_alignment(source, target)

    def _frame_maps(self, prediction: FramePrediction, frame_size: tuple[int, int]) -> FrameMaps:
        width, height = frame_size

        def to_frame(a: np.ndarray) -> np.ndarray:
            return cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)

        depth, canonical = to_frame(prediction.depth), to_frame(prediction.canonical)
        canonical_confidence = to_frame(prediction.canonical_confidence)
        mask = (canonical_confidence >= self.mask_confidence) & (depth > 0)
        if self.alignment is not None:
            mask &= self._in_bounds(canonical)
        if not mask.any():
            return FrameMaps.empty(prediction.intrinsics, frame_size)
        x0, y0, x1, y1 = window = crop_window(mask)
        mask = mask[y0:y1, x0:x1]
        return FrameMaps(
            depth=np.where(mask, depth[y0:y1, x0:x1], 0).astype(np.float32),
            canonical=np.where(mask[..., None], canonical[y0:y1, x0:x1], 0).astype(np.float32),
            depth_confidence=np.clip(to_frame(prediction.depth_confidence)[y0:y1, x0:x1], 0, 1),
            canonical_confidence=np.clip(canonical_confidence[y0:y1, x0:x1], 0, 1),
            mask=mask,
            intrinsics=np.asarray(prediction.intrinsics, np.float64),
            frame_size=(width, height),
            window=window,
            head_pose=self._head_pose(prediction),
        )

    def _head_pose(self, prediction: FramePrediction) -> np.ndarray | None:
        if self.alignment is None:
            return None
        fit = _face_points(prediction)
        if fit is None:
            return None
        camera, canonical = fit
        _, rotation, translation = similarity_fit(canonical, camera, with_scale=False)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, translation
        return pose


def frame_prediction(
    raw: dict[str, np.ndarray], i: int, frame_size: tuple[int, int], given: np.ndarray | None
) -> FramePrediction:
    """Frame ``i`` of a window's raw outputs (see `FaceAnythingBackend.infer`), with its
    intrinsics: solved from the rays, or ``given`` with the depth rescaled to them (see the module
    docstring), or the default field of view when the rays describe no camera."""
    solved = intrinsics_from_rays(raw["ray"][i], _unit_confidence(raw["ray_conf"][i]), frame_size)
    depth = raw["depth"][i]
    if given is not None:
        if solved is not None:
            depth = depth * np.float32(_mean_focal(given) / _mean_focal(solved))
        solved = given
    return FramePrediction(
        depth=depth,
        depth_confidence=_unit_confidence(raw["depth_conf"][i]),
        canonical=raw["canonical"][i],
        canonical_confidence=_unit_confidence(raw["canonical_conf"][i]),
        intrinsics=solved if solved is not None else intrinsics_for(*frame_size),
        frame_size=frame_size,
    )


def metres_per_depth_unit(prediction: FramePrediction) -> float | None:
    """Metric scale of a frame whose canonical coordinates are in metres (the template space):
    camera points = s R canonical + t over its face pixels gives 1 / s; None without a face."""
    fit = _face_points(prediction)
    if fit is None:
        return None
    camera, canonical = fit
    scale, _, _ = similarity_fit(canonical, camera)
    return 1.0 / scale if scale > 0 else None


def choose_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; or the named device, which must be available."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r}", "Use auto, cpu, cuda, cuda:N or mps.") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }.get(device.type, False)
    if not available:
        raise UserError(
            f"device {requested} is not available on this machine",
            "Use device auto (CUDA, then MPS, then CPU), or install a PyTorch build for this GPU.",
        )
    return device


def network_input_size(width: int, height: int, resolution: int = 504) -> tuple[int, int]:
    """(w, h) fed to the network: longest side ``resolution``, each side the nearest multiple of 14."""
    scale = resolution / max(width, height)
    return tuple(max(PATCH_SIZE, int(round(side * scale / PATCH_SIZE)) * PATCH_SIZE) for side in (width, height))


def preprocess(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, h, w) float32 ImageNet-normalised network input of an (H, W, 3) uint8 RGB frame."""
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    normalised = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def _check_window(mode: str, window: int, overlap: int) -> tuple[int, int]:
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}", "Use 'window' (frames attend to each other) or 'single'.")
    if mode == "single":
        return 1, 0
    if window < 1 or not 0 <= overlap < window:
        raise UserError(
            f"window {window} with overlap {overlap} is not possible",
            "The window needs at least one frame and the overlap must be smaller than the window (e.g. 8 and 2).",
        )
    return int(window), int(overlap)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def _default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "faceanything" / "alignments"


def _check_intrinsics(intrinsics: np.ndarray | None) -> np.ndarray | None:
    if intrinsics is None:
        return None
    k = np.asarray(intrinsics, np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise InputError(f"intrinsics must be a 3x3 pinhole matrix with positive focal lengths, got {k.tolist()}",
                         "Give the focal length in pixels or millimetres, or none to solve it from the footage.")
    return k


def _check_image(image: np.ndarray, index: int, shape: tuple | None) -> tuple:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"frame {index} is not an RGB image (got {getattr(image, 'shape', type(image))}, "
            f"{getattr(image, 'dtype', '')})",
            "Frames must be (height, width, 3) uint8 RGB arrays.",
        )
    if shape is not None and image.shape != shape:
        raise InputError(
            f"frame {index} is {image.shape[1]}x{image.shape[0]} but the clip's frames are {shape[1]}x{shape[0]}",
            "All frames of a clip must have the same size; split the clip or resize the frames.",
        )
    return image.shape


def _maps_as_stored(maps: FrameMaps) -> FrameMaps | None:
    """The maps with their depth as the capture folder gives it back (what a window's depth tie
    compares); None without a face."""
    return dataclasses.replace(maps, depth=stored_depth(maps.depth, maps.mask)) if maps.has_face else None


def _unit_confidence(confidence: np.ndarray) -> np.ndarray:
    """The network's confidences (1 + exp(x) >= 1) mapped to [0, 1)."""
    return (1.0 - 1.0 / np.maximum(confidence, 1.0)).astype(np.float32)


def _mean_focal(k: np.ndarray) -> float:
    return float(k[0, 0] + k[1, 1]) / 2


def _face_points(prediction: FramePrediction) -> tuple[np.ndarray, np.ndarray] | None:
    """(camera points, canonical points) of up to _MAX_FIT_POINTS face pixels, evenly spread."""
    rows, cols = np.nonzero(prediction.mask)
    if rows.size < _MIN_SCALE_PIXELS:
        return None
    step = max(1, rows.size // _MAX_FIT_POINTS)
    rows, cols = rows[::step], cols[::step]
    height, width = prediction.depth.shape
    frame_width, frame_height = prediction.frame_size
    # Network pixel centres -> frame pixel positions, then unprojected with the frame intrinsics.
    x = (cols + 0.5) * frame_width / width - 0.5
    y = (rows + 0.5) * frame_height / height - 0.5
    k = prediction.intrinsics
    z = prediction.depth[rows, cols].astype(np.float64)
    camera = np.stack([(x - k[0, 2]) / k[0, 0] * z, (y - k[1, 2]) / k[1, 1] * z, z], axis=1)
    return camera, prediction.canonical[rows, cols].astype(np.float64)


def _mediapipe_landmarks(backend, image: np.ndarray, intrinsics: np.ndarray):
    """A LandmarkDetector over the MediaPipe backend's FrameMaps; landmarks facing away under
    its head pose are not visible."""
    from .mediapipe_dense import vertex_facing

    maps = backend.predict(image, intrinsics)
    if maps.landmarks2d is None or not maps.has_face:
        return None
    visible = np.ones(len(maps.landmarks2d), bool)
    if maps.head_pose is not None:
        template = backend.template
        points = template.vertices @ maps.head_pose[:3, :3].T + maps.head_pose[:3, 3]
        visible = vertex_facing(points, template.triangles) > _MIN_FACING_COS
    return np.asarray(maps.landmarks2d, np.float64), visible
