"""Named tracked points: the template's landmarks plus the points the user asks for.

Every point is a canonical coordinate. The template's landmarks are template vertices, so in
template mode they are mesh vertices and simply follow the mesh; other points (dense mode, user
points) are tracked like vertices, as extra queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture_folder import CaptureFolder
from ..contract import FrameMaps
from ..errors import UserError
from .options import PointRequest


@dataclass
class PointSet:
    names: list[str]
    canonical: np.ndarray  # (P, 3) float64
    vertex: np.ndarray  # (P,) int64: the mesh vertex the point is, or -1 (tracked on its own)

    @property
    def extra(self) -> np.ndarray:
        """Indices of the points tracked on their own."""
        return np.flatnonzero(self.vertex < 0)


def resolve_points(
    requests: list[PointRequest], template, landmarks_are_vertices: bool, capture: CaptureFolder
) -> PointSet:
    """The template's landmarks (when there is a template) followed by the user's points.

    `landmarks_are_vertices`: the mesh keeps the template's vertex indices (template mode).
    """
    names: list[str] = []
    canonical: list[np.ndarray] = []
    vertex: list[int] = []
    landmarks = dict(template.landmarks) if template is not None else {}
    for name, index in landmarks.items():
        names.append(name)
        canonical.append(np.asarray(template.vertices[index], np.float64))
        vertex.append(index if landmarks_are_vertices else -1)
    pixel_picks = _pick_pixels([r.pixel for r in requests if r.pixel], capture)
    for request in requests:
        if request.landmark:
            if request.landmark not in landmarks:
                raise _unknown_landmark(request.landmark, landmarks, template)
            continue
        name = request.name or f"user_{sum(n.startswith('user_') for n in names) + 1}"
        if name in names:
            raise UserError(f"two points are named {name!r}", "Give each point its own name (NAME=...).", code="bad_option")
        names.append(name)
        canonical.append(np.asarray(request.canonical, np.float64) if request.canonical else pixel_picks[request.pixel])
        vertex.append(-1)
    return PointSet(names, np.asarray(canonical, np.float64).reshape(-1, 3), np.asarray(vertex, np.int64))


def canonical_under_pixel(maps: FrameMaps, x: float, y: float) -> np.ndarray | None:
    """The canonical coordinate at frame pixel (x, y): bilinear between the four surrounding
    pixels when all are face pixels, else that of the nearest face pixel within one pixel; None
    when (x, y) is not on the face."""
    x0, y0 = maps.window[:2]
    height, width = maps.mask.shape
    col, row = x - x0, y - y0
    left, top = int(np.floor(col)), int(np.floor(row))
    if 0 <= left and 0 <= top and left + 1 < width and top + 1 < height and maps.mask[top : top + 2, left : left + 2].all():
        fx, fy = col - left, row - top
        block = maps.canonical[top : top + 2, left : left + 2].astype(np.float64)
        upper = block[0, 0] * (1 - fx) + block[0, 1] * fx
        lower = block[1, 0] * (1 - fx) + block[1, 1] * fx
        return upper * (1 - fy) + lower * fy
    rows, cols = np.nonzero(maps.mask)
    if rows.size == 0:
        return None
    distance = np.hypot(cols - col, rows - row)
    nearest = int(np.argmin(distance))
    if distance[nearest] > 1.0:
        return None
    return maps.canonical[rows[nearest], cols[nearest]].astype(np.float64)


def _pick_pixels(picks: list[tuple[int, float, float]], capture: CaptureFolder) -> dict:
    found = {}
    for frame in sorted({pick[0] for pick in picks}):
        maps = capture.frame(capture.capture_index(frame, f"point pixel:{frame}:..., frame"))
        for pick in (p for p in picks if p[0] == frame):
            coordinate = canonical_under_pixel(maps, pick[1], pick[2])
            if coordinate is None:
                raise UserError(
                    f"pixel ({pick[1]:g}, {pick[2]:g}) of frame {frame} is not on the face",
                    "Pick a pixel inside the face mask of that frame.",
                    code="bad_option",
                )
            found[pick] = coordinate
    return found


def _unknown_landmark(name: str, landmarks: dict, template) -> UserError:
    if template is None:
        return UserError(
            f"point {name!r} names a template landmark, but this capture's canonical space has no template",
            "Give the point as a canonical coordinate X,Y,Z or as pixel:FRAME:X:Y.",
            code="bad_option",
        )
    return UserError(
        f"there is no landmark named {name!r}",
        f"Landmark names: {', '.join(sorted(landmarks))}.",
        code="bad_option",
    )
