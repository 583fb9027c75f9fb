"""Temporal refinement of a canonical map: the network backend's appearance stage.

The network predicts every frame's canonical map on its own, so a point of the skin gets a
slightly different canonical coordinate in every frame (the map flickers). Here the previous
frame's refined map is carried into the current frame by dense optical flow (OpenCV DIS, both
directions, forward-backward checked) and blended with the current prediction:

    refined = current + alpha * (carried - current),   alpha = memory * trust   (< 1)

``trust`` in [0, 1] is the product of three weights per pixel: the flow check (forward and
backward flow agree), the confidences (the carried map counts fully when it was at least as
confident as the current prediction) and the agreement of the two maps (a carried value far
from the current one, beyond a few times this frame's typical difference, is an error of the
flow, e.g. at an occluder that moves with the skin). Where the flow fails (occluder,
disocclusion, the previous map has no face there) ``trust`` is 0 and the current prediction
stands. Because ``alpha <= memory < 1`` the filter forgets: an old frame's weight falls as
``memory ** age``, so flow errors cannot pile up into drift as they do when flow alone is chained.

Everything runs at the network's map resolution on grey images; numpy and OpenCV only.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .contract import FrameMaps

MEMORY = 0.8
"""The largest weight of the carried map. Fully trusted, white noise's std falls to
sqrt((1 - m) / (1 + m)) = 1/3; an old frame's weight falls at least as m ** age."""
FLOW_TOLERANCE_PX = 0.75
"""Forward-backward disagreement (pixels) at which a pixel's flow is no longer trusted at all."""
AGREEMENT_SPREAD = 3.0
"""Carried and current values further apart than this many times the frame's median difference
are not blended."""
BOX_MARGIN_PX = 16
"""Flow is computed in the face's box grown by this much (context for the flow at its border)."""
_MIN_FLOW_SIDE = 16  # DIS needs images of at least 12 pixels a side
_MEDIAN_STRIDE = 4  # the typical difference is the median of every 4th trusted pixel


@dataclass
class MapState:
    """What the refinement of the next frame needs: the previous frame at map resolution."""

    gray: np.ndarray  # (h, w) uint8
    canonical: np.ndarray  # (h, w, 3) float32, the refined map
    confidence: np.ndarray  # (h, w) float32 in [0, 1]
    valid: np.ndarray  # (h, w) bool, pixels holding a face coordinate


def gray_at_map_size(image_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 grey image of an RGB frame at map size ``(w, h)``."""
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape[::-1] == tuple(size):
        return gray
    shrinking = size[0] * size[1] < gray.size
    return cv2.resize(gray, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class MapFusion:
    """Refines one frame's canonical map at a time (see the module docstring)."""

    def __init__(self, memory: float = MEMORY):
        if not 0.0 <= memory < 1.0:
            raise ValueError(f"memory must be in [0, 1), got {memory}")
        self.memory = float(memory)

    def refine(self, previous: MapState | None, gray: np.ndarray, canonical: np.ndarray, confidence: np.ndarray,
               valid: np.ndarray) -> np.ndarray:
        """The current frame's refined (h, w, 3) float32 canonical map; the prediction itself
        without a previous frame, when the map size changed or when the face is too small for flow."""
        if previous is None or previous.gray.shape != gray.shape:
            return canonical
        box = _face_box(previous.valid | valid)
        if box is None or not valid.any() or min(box[2] - box[0], box[3] - box[1]) < _MIN_FLOW_SIDE:
            return canonical
        crop = (slice(box[1], box[3]), slice(box[0], box[2]))
        alpha, carried = self.carried(
            MapState(*(a[crop] for a in (previous.gray, previous.canonical, previous.confidence, previous.valid))),
            np.ascontiguousarray(gray[crop]), confidence[crop], valid[crop], canonical[crop],
        )
        refined = canonical.copy()
        refined[crop] += alpha[..., None] * (carried - refined[crop])
        return refined

    def carried(self, previous: MapState, gray: np.ndarray, confidence: np.ndarray, valid: np.ndarray,
                canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha (h, w), the previous map carried to the current frame (h, w, 3)), all maps
        of the same size."""
        previous_gray = np.ascontiguousarray(previous.gray)
        backward = dense_flow(gray, previous_gray)  # current pixel -> where it was
        forward = dense_flow(previous_gray, gray)
        height, width = gray.shape
        sample = _sampler(backward[..., 0] + np.arange(width, dtype=np.float32),
                          backward[..., 1] + np.arange(height, dtype=np.float32)[:, None])
        flow_back, was_valid = sample(forward), sample(previous.valid.astype(np.float32))
        carried, carried_confidence = sample(previous.canonical), sample(previous.confidence)
        flow_trust = np.clip(1.0 - _norm(backward + flow_back) / FLOW_TOLERANCE_PX, 0.0, 1.0)
        # All four pixels the bilinear sample mixes must hold a face coordinate.
        both = (was_valid > 1.0 - 1e-4) & valid & (flow_trust > 0)
        if not both.any():
            return np.zeros((height, width), np.float32), canonical
        confidence_trust = np.clip(carried_confidence / np.maximum(confidence, 1e-6), 0.0, 1.0)
        difference = _norm(carried - canonical)
        typical = np.median(difference[both][::_MEDIAN_STRIDE])
        agreement = np.exp(-np.square(difference / max(AGREEMENT_SPREAD * float(typical), 1e-12)))
        alpha = np.where(both, self.memory * flow_trust * confidence_trust * agreement, 0.0).astype(np.float32)
        return alpha, carried


def dense_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(h, w, 2) DIS flow from ``source`` to ``target``. A fresh DIS object per call: one reused
    across calls keeps state that changes its results in the last bits, and a resumed capture
    would then differ from an uninterrupted one."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST).calc(source, target, None)


def _face_box(valid: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around the face pixels, grown by BOX_MARGIN_PX; None without any."""
    rows, columns = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return None
    height, width = valid.shape
    return (max(int(columns[0]) - BOX_MARGIN_PX, 0), max(int(rows[0]) - BOX_MARGIN_PX, 0),
            min(int(columns[-1]) + 1 + BOX_MARGIN_PX, width), min(int(rows[-1]) + 1 + BOX_MARGIN_PX, height))


def _norm(vectors: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...i,...i->...", vectors, vectors))


def state_from_maps(gray: np.ndarray, maps: FrameMaps) -> MapState | None:
    """The state a frame leaves for the next one, from its maps as emitted (frame resolution,
    cropped to their window): sampled at the centres of the map-resolution pixels of ``gray``.
    The canonical map and confidence are first rounded to float16, as the capture folder stores
    them, so the maps read back from a capture folder give a resumed capture the very state the
    uninterrupted one had. None without a face."""
    if not maps.has_face:
        return None
    sample = sampler_at_map_pixels(maps, gray.shape[::-1])
    return MapState(gray, sample(_as_stored(maps.canonical)), sample(_as_stored(maps.canonical_confidence)),
                    face_pixels(sample, maps.mask))


def sampler_at_map_pixels(maps: FrameMaps, size: tuple[int, int]):
    """A function sampling an array of the maps' window (frame resolution) at the centres of the
    pixels of a ``size`` (w, h) map: float32 (h, w[, c]), bilinear, 0 away from the window."""
    width, height = size
    frame_width, frame_height = maps.frame_size
    x0, y0, x1, y1 = maps.window
    # Map pixel centres in the window's coordinates; only those near the window are sampled.
    x = (np.arange(width, dtype=np.float32) + 0.5) * np.float32(frame_width / width) - 0.5 - x0
    y = (np.arange(height, dtype=np.float32) + 0.5) * np.float32(frame_height / height) - 0.5 - y0
    columns, rows = np.flatnonzero((x > -1) & (x < x1 - x0)), np.flatnonzero((y > -1) & (y < y1 - y0))
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)) if columns.size and rows.size else None
    sample_box = _sampler(*np.meshgrid(x[box[1]], y[box[0]])) if box else None

    def sample(a: np.ndarray) -> np.ndarray:
        sampled = np.zeros((height, width, *a.shape[2:]), np.float32)
        if box:
            sampled[box] = sample_box(a)
        return sampled

    return sample


def face_pixels(sample, mask: np.ndarray) -> np.ndarray:
    """The pixels ``sample`` (`sampler_at_map_pixels`) takes from face pixels only: a pixel whose
    sample mixes in a non-face pixel holds no face value."""
    return sample(mask.astype(np.float32)) > 1.0 - 1e-4


def _as_stored(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to float16 (see `capture_folder.write_frame`); OpenCV's conversion
    gives the same bits as numpy's ``astype`` (round to nearest even) about 15 times quicker."""
    return cv2.convertFp16(cv2.convertFp16(np.ascontiguousarray(a)))


def _sampler(map_x: np.ndarray, map_y: np.ndarray):
    """A function sampling (bilinear, 0 outside) any map at the float positions ``(map_x, map_y)``;
    the positions are converted once to OpenCV's fixed-point form (1/32 pixel), which several
    samples share and which is quicker."""
    fixed, fraction = cv2.convertMaps(map_x.astype(np.float32), map_y.astype(np.float32), cv2.CV_16SC2)

    def sample(a: np.ndarray) -> np.ndarray:
        return cv2.remap(a, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    return sample
