"""The output contract every backend fills: one `FrameMaps` per frame.

Conventions (the whole runtime uses them):

* Camera space is OpenCV's: x right, y down, z forward (away from the camera), metres.
* Pixel coordinates put the centre of pixel (row r, column c) at (x=c, y=r). A pixel's
  camera ray is ``K^-1 @ (x, y, 1)``.
* Canonical face space (``CANONICAL_SPACE_ID`` for the default backend): metres, +X to the
  subject's left (image right on a frontal face), +Y up, +Z out of the face, origin between the
  eyes. A backend with its own canonical space (the Face Anything network) names it in
  ``canonical_space`` and the capture manifest records it.

Maps cover a *window* of the frame rather than the whole frame, because faces rarely fill
it: ``window = (x0, y0, x1, y1)`` (half-open, pixels), and map pixel ``[r, c]`` is frame pixel
``(y0 + r, x0 + c)``. ``full()`` expands them to the whole frame when a caller needs that.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CANONICAL_SPACE_ID = "faceanything-mp478-v1"


@dataclass
class FrameMaps:
    """Per-frame prediction of one backend.

    Shapes: ``h, w = y1 - y0, x1 - x0`` of ``window``.

    depth:                (h, w) float32, metres along +z; 0 where ``mask`` is False.
    canonical:            (h, w, 3) float32, canonical coordinate of the surface seen at the
                          pixel; 0 where ``mask`` is False.
    depth_confidence:     (h, w) float32 in [0, 1].
    canonical_confidence: (h, w) float32 in [0, 1].
    mask:                 (h, w) bool, face pixels.
    intrinsics:           (3, 3) float64 pinhole matrix in pixels.
    frame_size:           (width, height) of the whole frame in pixels.
    window:               (x0, y0, x1, y1) int, the region the maps cover.
    landmarks2d:          (L, 2) float32 pixel positions, or None (backend without landmarks).
    landmarks3d:          (L, 3) float32 camera-space points, or None.
    head_pose:            (4, 4) float64 canonical -> camera rigid transform, or None.
    """

    depth: np.ndarray
    canonical: np.ndarray
    depth_confidence: np.ndarray
    canonical_confidence: np.ndarray
    mask: np.ndarray
    intrinsics: np.ndarray
    frame_size: tuple[int, int]
    window: tuple[int, int, int, int]
    landmarks2d: np.ndarray | None = None
    landmarks3d: np.ndarray | None = None
    head_pose: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    @property
    def has_face(self) -> bool:
        return bool(self.mask.any())

    @classmethod
    def empty(cls, intrinsics: np.ndarray, frame_size: tuple[int, int]) -> "FrameMaps":
        """A frame in which the backend found no face."""
        return cls(
            depth=np.zeros((0, 0), np.float32),
            canonical=np.zeros((0, 0, 3), np.float32),
            depth_confidence=np.zeros((0, 0), np.float32),
            canonical_confidence=np.zeros((0, 0), np.float32),
            mask=np.zeros((0, 0), bool),
            intrinsics=np.asarray(intrinsics, np.float64),
            frame_size=tuple(frame_size),
            window=(0, 0, 0, 0),
        )

    def full(self) -> "FrameMaps":
        """The same maps padded to the whole frame (window = the frame)."""
        width, height = self.frame_size
        x0, y0, x1, y1 = self.window

        def pad(a: np.ndarray) -> np.ndarray:
            out = np.zeros((height, width) + a.shape[2:], a.dtype)
            out[y0:y1, x0:x1] = a
            return out

        return FrameMaps(
            depth=pad(self.depth),
            canonical=pad(self.canonical),
            depth_confidence=pad(self.depth_confidence),
            canonical_confidence=pad(self.canonical_confidence),
            mask=pad(self.mask),
            intrinsics=self.intrinsics,
            frame_size=self.frame_size,
            window=(0, 0, width, height),
            landmarks2d=self.landmarks2d,
            landmarks3d=self.landmarks3d,
            head_pose=self.head_pose,
            extras=self.extras,
        )


def crop_window(mask: np.ndarray, margin: int = 2) -> tuple[int, int, int, int]:
    """Smallest (x0, y0, x1, y1) holding every True pixel of a whole-frame mask, plus a margin."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    height, width = mask.shape
    return (
        max(int(cols[0]) - margin, 0),
        max(int(rows[0]) - margin, 0),
        min(int(cols[-1]) + 1 + margin, width),
        min(int(rows[-1]) + 1 + margin, height),
    )
