"""Canonical look-up: where in one frame is the surface point with a given canonical coordinate?

Each query needs an *anchor*, a face pixel next to where the frame's canonical map equals the
query. The canonical map and the unprojected depth are linearised at the anchor: its own values,
and slopes fitted over its 3x3 pixel neighbourhood (weighted least squares, weights = the pixels'
confidence, missing pixels weigh nothing). The sub-pixel position where the linearised canonical
map meets the query gives the camera-space point. This is exact wherever the maps are linear
across a pixel (the default backend rasterises a triangle mesh) and stays within a fraction of a
pixel at the mesh's creases and at the edges of the face (eye corners, lids, mouth corners),
where averaging the k nearest pixels would pull points inwards by up to a pixel and move them in
half-pixel steps as the face moves. A plane fitted through all nine values would average depth
noise but blur the creases (twice the error at the template's vertices, measured on synthetic
clips and on MediaPipe's landmarks); noise is left to the temporal smoothing.

Anchors come from where the caller expects each query (its motion over the last frames); a guess
whose solution lies more than a pixel away moves towards it (at most `MAX_MOVES` times). Queries
without a usable guess are looked up in a cKDTree of the frame's face pixels by canonical
coordinate, one query for all of them. A query counts as seen when its solution settles within
reach of a face pixel and the fitted canonical plane passes within `radius` of it; hidden queries
(turned away, behind the nose, under a hand) are left to `fill.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..contract import FrameMaps

MAX_SUBPIXEL_STEP = 1.5
"""Pixels the solution may move from its anchor (the fit covers one pixel around it)."""
ANCHOR_REACH = 2.0
"""The anchor search goes this many times `radius` out (the sub-pixel step closes the gap)."""
MAX_MOVES = 1
"""Steps a guessed anchor may take towards its solution before the tree is asked instead."""
SLOPE_DAMPING = 1e-3
"""Keeps the plane fit solvable when the valid neighbours are collinear (a one-pixel strip)."""
_OFFSETS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # the 3x3 neighbourhood, row by row
_OFFSET_ARRAY = np.array(_OFFSETS, np.float64)
_CENTRE = _OFFSETS.index((0, 0))
_MOMENTS = np.array([[1.0] * 9, [dx for dx, _ in _OFFSETS], [dy for _, dy in _OFFSETS]], np.float32)
_SECOND_MOMENTS = np.array([[dx * dx for dx, dy in _OFFSETS], [dx * dy for dx, dy in _OFFSETS], [dy * dy for dx, dy in _OFFSETS]], np.float32)


@dataclass
class FrameTrack:
    """Look-up results for n queries in one frame."""

    positions: np.ndarray  # (n, 3) float64 camera space
    pixels: np.ndarray  # (n, 2) float64 sub-pixel image position
    confidence: np.ndarray  # (n,) float64 in [0, 1]: neighbourhood confidence (0 where not seen)
    seen: np.ndarray  # (n,) bool


@dataclass
class _Solution:
    positions: np.ndarray  # (n, 3)
    pixels: np.ndarray  # (n, 2)
    weight: np.ndarray  # (n,)
    miss: np.ndarray  # (n,) canonical distance between the query and the fitted plane's point
    step: np.ndarray  # (n,) pixels between the anchor and the solution


class CanonicalLookup:
    """One frame's face pixels, indexed by canonical coordinate."""

    def __init__(self, maps: FrameMaps):
        pixels, points, canonical, confidence = maps.face_points()
        self.canonical = canonical
        # Weight-premultiplied channels (w * canonical xyz, w * camera xyz, w) on the window grid
        # padded by one pixel and flattened, so the 3x3 neighbours of an anchor sit at fixed flat
        # offsets, never outside. The fit runs in float32 (half the memory traffic of float64) on
        # coordinates relative to one of the frame's face pixels, which keeps rounding near 1e-8 m.
        height, width = maps.mask.shape
        self.origin = np.array(maps.window[:2]) - 1  # frame pixel of padded grid cell (0, 0)
        self.shape = (height + 2, width + 2)
        cell = pixels.astype(np.int64) - self.origin
        self.flat = cell[:, 1] * self.shape[1] + cell[:, 0]
        self.neighbours = np.array([dy * self.shape[1] + dx for dx, dy in _OFFSETS])
        self.reference = np.concatenate([canonical[0], points[0]])[:, None]  # (6, 1): any face pixel
        self.channels = np.zeros((7, self.shape[0] * self.shape[1]), np.float32)
        self.channels[:6, self.flat] = (np.hstack([canonical, points]) - self.reference.T).T * confidence
        self.channels[6, self.flat] = confidence
        self.face = np.zeros(self.shape[0] * self.shape[1], bool)
        self.face[self.flat] = True
        self.pixel_index = np.zeros(self.shape[0] * self.shape[1], np.int64)  # face pixel number per grid cell
        self.pixel_index[self.flat] = np.arange(len(self.flat))
        self.pixels = pixels
        self._sparse = self._tree = None  # built on first use (a frame where every guess holds needs none)

    def track(self, queries: np.ndarray, radius: float, guess: np.ndarray | None = None) -> FrameTrack:
        """Positions of the canonical coordinates `queries` (n, 3) in this frame; `guess` (n, 2)
        holds expected pixel positions (NaN where unknown)."""
        count = len(queries)
        positions, pixels = np.zeros((count, 3)), np.zeros((count, 2))
        confidence, seen = np.zeros(count), np.zeros(count, bool)
        anchor = self._anchor_at(guess) if guess is not None else np.full(count, -1)
        from_tree = np.zeros(count, bool)
        moves = np.zeros(count, int)
        previous = np.full(count, -1)
        pending = np.arange(count)
        for _ in range(2 * (MAX_MOVES + 1)):  # a guess and its moves, then the tree and its moves
            lost = pending[anchor[pending] < 0]
            anchor[lost] = self._nearest(queries[lost], radius)
            from_tree[lost] = True
            moves[lost] = 0
            pending = pending[anchor[pending] >= 0]
            if pending.size == 0:
                break
            solution = self._solve(anchor[pending], queries[pending])
            far = solution.step > 1.0
            nearer = anchor[pending].copy()  # the pixel nearest each solution; only looked up when far
            nearer[far] = self._anchor_at(solution.pixels[far])
            # Converged: the solution lies within a pixel of its anchor, or within reach of an
            # anchor that no other face pixel is nearer to (the face's edge), or between two
            # anchors that point at each other.
            same = nearer == anchor[pending]
            converged = (solution.step <= 1.0) | ((solution.step < MAX_SUBPIXEL_STEP) & (same | (nearer == previous[pending])))
            good = converged & (solution.miss <= radius)
            rows = pending[good]
            positions[rows], pixels[rows], confidence[rows] = solution.positions[good], solution.pixels[good], solution.weight[good]
            seen[rows] = True
            # Not converged: step towards the solution, at most MAX_MOVES times. A guess that
            # still fails asks the tree; a tree anchor that still fails means a hidden point.
            move = ~converged & ~same & (nearer >= 0) & (moves[pending] < MAX_MOVES)
            previous[pending] = anchor[pending]
            anchor[pending] = np.where(move, nearer, -1)
            moves[pending] += move
            pending = pending[move | (~from_tree[pending] & ~good)]
        return FrameTrack(positions, pixels, confidence, seen)

    def _nearest(self, queries: np.ndarray, radius: float) -> np.ndarray:
        """Anchors from the tree: the flat index of the face pixel canonically nearest each query
        (the tree holds every other pixel in x and y, so it is 4x cheaper to build, and the best
        pixel around its answer is taken), or -1 when none is within reach."""
        if len(queries) == 0:
            return np.zeros(0, np.int64)
        if self._tree is None:
            self._sparse = np.flatnonzero((self.pixels[:, 0] % 2 == 0) & (self.pixels[:, 1] % 2 == 0))
            self._tree = cKDTree(self.canonical[self._sparse], balanced_tree=False, compact_nodes=False)
        _, nearest = self._tree.query(queries, k=1, distance_upper_bound=ANCHOR_REACH * radius)
        found = np.flatnonzero(nearest < len(self._sparse))
        anchor = np.full(len(queries), -1)
        # The sparse tree's answer is within a pixel of the nearest face pixel: look around it.
        around = self.flat[self._sparse[nearest[found]]][:, None] + self.neighbours
        pixel = np.where(self.face[around], self.pixel_index[around], 0)
        distance = np.linalg.norm(self.canonical[pixel] - queries[found, None], axis=2)
        best = np.argmin(np.where(self.face[around], distance, np.inf), axis=1)
        anchor[found] = around[np.arange(found.size), best]
        return anchor

    def _anchor_at(self, pixels: np.ndarray) -> np.ndarray:
        """Flat index of the face pixel nearest each pixel position, looking no further than the
        3x3 around its rounded position (solutions at the face's edge lie outside it), or -1."""
        position = pixels - self.origin
        known = np.isfinite(position).all(axis=1)
        cell = np.round(np.where(known[:, None], position, -1)).astype(np.int64)
        inside = (cell >= 1).all(axis=1) & (cell[:, 0] < self.shape[1] - 1) & (cell[:, 1] < self.shape[0] - 1)
        flat = np.where(inside, cell[:, 1] * self.shape[1] + cell[:, 0], 0)
        anchor = np.where(inside & self.face[flat], flat, -1)
        edge = np.flatnonzero(inside & (anchor < 0))
        if edge.size:
            around = flat[edge, None] + self.neighbours
            offset = position[edge] - cell[edge]
            distance = (_OFFSET_ARRAY[None, :, 0] - offset[:, :1]) ** 2 + (_OFFSET_ARRAY[None, :, 1] - offset[:, 1:]) ** 2
            best = np.argmin(np.where(self.face[around], distance, np.inf), axis=1)
            chosen = around[np.arange(edge.size), best]
            anchor[edge] = np.where(self.face[chosen], chosen, -1)
        return anchor

    def _solve(self, centre: np.ndarray, queries: np.ndarray) -> _Solution:
        """Fit planes around the anchors `centre` (flat indices) and solve for the queries."""
        value, slope_x, slope_y, weight = self._fit_planes(centre)
        target = (queries.T - self.reference[:3]).astype(np.float32)
        step_x, step_y = _subpixel_step(slope_x[:3], slope_y[:3], target - value[:3])
        fitted = value + slope_x * step_x + slope_y * step_y  # (6, n): canonical, camera
        miss = fitted[:3] - target
        anchor_pixel = np.stack([centre % self.shape[1], centre // self.shape[1]], axis=1) + self.origin
        return _Solution(
            positions=(fitted[3:] + self.reference[3:]).T,
            pixels=anchor_pixel + np.stack([step_x, step_y], axis=1),
            weight=weight,
            miss=np.sqrt((miss * miss).sum(axis=0)),
            step=np.hypot(step_x, step_y),
        )

    def _fit_planes(self, centre: np.ndarray):
        """Planes through each anchor's own values with slopes fitted over its 3x3 neighbourhood
        (weighted least squares of v - v0 = slope_x * dx + slope_y * dy): value, slope_x and
        slope_y, each (6, n) float32 relative to `reference`, and the neighbourhood's mean
        weight (n,)."""
        stencil = np.take(self.channels, (self.neighbours[:, None] + centre).ravel(), axis=1).reshape(7, 9, -1)
        moments = np.matmul(_MOMENTS, stencil)  # (7, 3, n): sums of w*v, w*v*dx, w*v*dy
        total, sum_x, sum_y = moments[6]
        sum_xx, sum_xy, sum_yy = _SECOND_MOMENTS @ stencil[6]
        value = stencil[:6, _CENTRE] / np.maximum(stencil[6, _CENTRE], 1e-12)
        moment_x = moments[:6, 1] - value * sum_x
        moment_y = moments[:6, 2] - value * sum_y
        damping = SLOPE_DAMPING * total
        xx, yy = sum_xx + damping, sum_yy + damping
        scale = 1 / np.maximum(xx * yy - sum_xy * sum_xy, 1e-12)
        slope_x = (yy * moment_x - sum_xy * moment_y) * scale
        slope_y = (xx * moment_y - sum_xy * moment_x) * scale
        return value, slope_x, slope_y, total / 9


def _subpixel_step(slope_x: np.ndarray, slope_y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (dx, dy), each (n,), with slope_x*dx + slope_y*dy = target (all (3, n)),
    its length capped at `MAX_SUBPIXEL_STEP`; zero where the slopes are degenerate."""
    a = (slope_x * slope_x).sum(axis=0)
    b = (slope_x * slope_y).sum(axis=0)
    c = (slope_y * slope_y).sum(axis=0)
    u = (slope_x * target).sum(axis=0)
    v = (slope_y * target).sum(axis=0)
    determinant = a * c - b * b
    usable = determinant > 1e-6 * np.maximum(a * c, 1e-30)
    scale = np.where(usable, 1.0 / np.where(usable, determinant, 1.0), 0.0)
    step_x, step_y = (c * u - b * v) * scale, (a * v - b * u) * scale
    cap = np.minimum(1.0, MAX_SUBPIXEL_STEP / np.maximum(np.hypot(step_x, step_y), 1e-12))
    return step_x * cap, step_y * cap
