"""Canonical look-up: where in one frame is the surface point with a given canonical coordinate?

Each query needs an *anchor*, a face pixel next to where the frame's canonical map equals the
query. The canonical map and the depth are linearised at the anchor: its own values, and slopes
fitted over its 3x3 pixel neighbourhood (weighted least squares, weights = the pixels'
confidence, missing pixels weigh nothing). The sub-pixel position where the linearised canonical
map meets the query gives the camera-space point: that position's ray at the fitted depth. This
is exact wherever the maps are linear
across a pixel (the default backend rasterises a triangle mesh) and stays within a fraction of a
pixel at the mesh's creases and at the edges of the face (eye corners, lids, mouth corners),
where averaging the k nearest pixels would pull points inwards by up to a pixel and move them in
half-pixel steps as the face moves. A plane fitted through all nine values would average depth
noise but blur the creases (twice the error at the template's vertices, measured on synthetic
clips and on MediaPipe's landmarks); noise is left to the temporal smoothing.

The sums each pixel's fit needs depend on the frame alone, so `CanonicalLookup` makes them for
every pixel when it is built (reading.py builds it a few frames ahead of the tracker); a look-up
gathers them and solves the fit in a few element-wise steps.

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
_OFFSET_X = np.array([dx for dx, _ in _OFFSETS], np.float64)
_OFFSET_Y = np.array([dy for _, dy in _OFFSETS], np.float64)


@dataclass
class FrameTrack:
    """Look-up results for n queries in one frame."""

    positions: np.ndarray  # (n, 3) float64 camera space
    pixels: np.ndarray  # (n, 2) float64 sub-pixel image position
    confidence: np.ndarray  # (n,) float64 in [0, 1]: neighbourhood confidence (0 where not seen)
    seen: np.ndarray  # (n,) bool


@dataclass
class _Solution:
    values: np.ndarray  # (n, 6) float64: camera xyz, pixel xy, neighbourhood confidence
    miss: np.ndarray  # (n,) canonical distance between the query and the fitted plane's point
    step: np.ndarray  # (n,) pixels between the anchor and the solution


class CanonicalLookup:
    """One frame's face pixels, indexed by canonical coordinate, with the sums every pixel's
    plane fit needs."""

    def __init__(self, maps: FrameMaps):
        # The window grid padded by one pixel and flattened, so the 3x3 neighbours of a pixel
        # sit at fixed flat offsets, never outside.
        height, width = maps.mask.shape
        self.origin = np.array(maps.window[:2], np.float64) - 1  # frame pixel of padded grid cell (0, 0)
        self.shape = (height + 2, width + 2)
        self.neighbours = np.array([dy * self.shape[1] + dx for dx, dy in _OFFSETS])
        self.face = _padded(maps.mask).ravel()
        self.canonical = _padded(maps.canonical).reshape(-1, 3)
        reference = np.unravel_index(np.argmax(maps.mask), maps.mask.shape)  # any face pixel
        self.reference_canonical = maps.canonical[reference].astype(np.float64)
        self.reference_depth = float(maps.depth[reference])
        self.moments = _neighbourhood_moments(_weighted_channels(maps, reference))
        k = maps.intrinsics
        self.focal, self.centre = (float(k[0, 0]), float(k[1, 1])), (float(k[0, 2]), float(k[1, 2]))
        even = np.zeros(self.shape, bool)  # the tree holds every other face pixel in x and y
        even[1 + maps.window[1] % 2 : -1 : 2, 1 + maps.window[0] % 2 : -1 : 2] = True
        self._sparse = np.flatnonzero(self.face & even.ravel())
        self._tree = None  # built on first use (a frame where every query has a guess needs none)

    def track(self, queries: np.ndarray, radius: float, guess: np.ndarray | None = None) -> FrameTrack:
        """Positions of the canonical coordinates `queries` (n, 3) in this frame; `guess` (n, 2)
        holds expected pixel positions (NaN where unknown)."""
        count = len(queries)
        solved = np.zeros((count, 6))  # as `_Solution.values`
        seen = np.zeros(count, bool)
        targets = (queries - self.reference_canonical).T.astype(np.float32)
        anchor = self._anchor_at(guess) if guess is not None else np.full(count, -1)
        from_tree = np.zeros(count, bool)
        moves = np.zeros(count, np.int8)
        previous = np.full(count, -1)
        pending = np.arange(count)
        for _ in range(2 * (MAX_MOVES + 1)):  # a guess and its moves, then the tree and its moves
            current = anchor[pending]
            lost = current < 0
            if lost.any():
                rows = pending[lost]
                current[lost] = self._nearest(queries[rows], radius)
                from_tree[rows] = True
                moves[rows] = 0
                usable = current >= 0
                pending, current = pending[usable], current[usable]
            if pending.size == 0:
                break
            solution = self._solve(current, targets[:, pending])
            far = np.flatnonzero(solution.step > 1.0)
            nearer = current.copy()  # the pixel nearest each solution; only looked up when far
            nearer[far] = self._anchor_at(solution.values[far, 3:5])
            # Converged: the solution lies within a pixel of its anchor, or within reach of an
            # anchor that no other face pixel is nearer to (the face's edge), or between two
            # anchors that point at each other.
            same = nearer == current
            converged = (solution.step <= 1.0) | ((solution.step < MAX_SUBPIXEL_STEP) & (same | (nearer == previous[pending])))
            good = converged & (solution.miss <= radius)
            rows = pending[good]
            solved[rows] = solution.values[good]
            seen[rows] = True
            # Not converged: step towards the solution, at most MAX_MOVES times. A guess that
            # still fails asks the tree; a tree anchor that still fails means a hidden point.
            move = ~converged & ~same & (nearer >= 0) & (moves[pending] < MAX_MOVES)
            previous[pending] = current
            anchor[pending] = np.where(move, nearer, -1)
            moves[pending] += move
            pending = pending[move | ~(from_tree[pending] | good)]
        return FrameTrack(solved[:, :3], solved[:, 3:5], solved[:, 5], seen)

    def _nearest(self, queries: np.ndarray, radius: float) -> np.ndarray:
        """Anchors from the tree: the flat index of the face pixel canonically nearest each query
        (the tree holds every other pixel in x and y, so it is 4x cheaper to build, and the best
        pixel around its answer is taken), or -1 when none is within reach."""
        if self._tree is None:
            self._tree = cKDTree(self.canonical[self._sparse], leafsize=64, balanced_tree=False, compact_nodes=False, copy_data=False)
        _, nearest = self._tree.query(queries, k=1, distance_upper_bound=ANCHOR_REACH * radius)
        found = np.flatnonzero(nearest < len(self._sparse))
        anchor = np.full(len(queries), -1)
        # The sparse tree's answer is within a pixel of the nearest face pixel: look around it.
        around = self._sparse[nearest[found]][:, None] + self.neighbours
        offset = self.canonical[around] - queries[found, None]
        distance = np.einsum("ijk,ijk->ij", offset, offset)
        best = np.argmin(np.where(self.face[around], distance, np.inf), axis=1)
        anchor[found] = around[np.arange(found.size), best]
        return anchor

    def _anchor_at(self, pixels: np.ndarray) -> np.ndarray:
        """Flat index of the face pixel nearest each pixel position, looking no further than the
        3x3 around its rounded position (solutions at the face's edge lie outside it), or -1."""
        x, y = pixels[:, 0] - self.origin[0], pixels[:, 1] - self.origin[1]
        column, row = np.rint(x), np.rint(y)
        inside = (column >= 1) & (column < self.shape[1] - 1) & (row >= 1) & (row < self.shape[0] - 1)  # False where NaN
        flat = np.where(inside, row * self.shape[1] + column, 0).astype(np.int64)
        on_face = self.face[flat]  # the padded border, flat index 0 included, is never face
        anchor = np.where(on_face, flat, -1)
        edge = np.flatnonzero(inside & ~on_face)
        if edge.size:
            around = flat[edge, None] + self.neighbours
            distance = (_OFFSET_X - (x[edge] - column[edge])[:, None]) ** 2 + (_OFFSET_Y - (y[edge] - row[edge])[:, None]) ** 2
            best = np.argmin(np.where(self.face[around], distance, np.inf), axis=1)
            chosen = around[np.arange(edge.size), best]
            anchor[edge] = np.where(self.face[chosen], chosen, -1)
        return anchor

    def _solve(self, anchor: np.ndarray, targets: np.ndarray) -> _Solution:
        """Fit the planes of the pixels `anchor` (flat indices) and solve them for the canonical
        `targets` (3, n, relative to the reference)."""
        cell = np.ascontiguousarray(np.take(self.moments, anchor, axis=0).T)  # rows as `_MOMENT_ROWS`
        xx, xy, yy = cell[_XX], cell[_XY], cell[_YY]
        scale = 1 / np.maximum(xx * yy - xy * xy, 1e-12)
        moment_x, moment_y = cell[_MOMENT_X], cell[_MOMENT_Y]
        slope_x = (yy * moment_x - xy * moment_y) * scale
        slope_y = (xx * moment_y - xy * moment_x) * scale
        step_x, step_y, step = _subpixel_step(slope_x[:3], slope_y[:3], targets - cell[_CANONICAL])
        fitted = cell[_VALUE] + slope_x * step_x + slope_y * step_y  # canonical xyz, depth
        miss = fitted[:3] - targets
        row, column = np.divmod(anchor, self.shape[1])
        values = np.empty((len(anchor), 6))
        x, y, depth = values[:, 3], values[:, 4], values[:, 2]
        np.add(column + self.origin[0], step_x, out=x)
        np.add(row + self.origin[1], step_y, out=y)
        np.add(fitted[3], self.reference_depth, out=depth)
        values[:, 0] = (x - self.centre[0]) * (depth / self.focal[0])
        values[:, 1] = (y - self.centre[1]) * (depth / self.focal[1])
        values[:, 5] = cell[_WEIGHT]
        return _Solution(values=values, miss=np.sqrt(np.einsum("ij,ij->j", miss, miss)), step=step)


# Columns of `CanonicalLookup.moments`, one row per padded grid cell (float32, relative to the
# frame's reference face pixel): the cell's own values (canonical xyz, depth), the weighted
# moments of its 3x3 neighbourhood about them (sums of w * (v - v0) * dx and * dy), the weights'
# second moments (xx and yy damped), and the neighbourhood's mean weight.
_VALUE, _MOMENT_X, _MOMENT_Y = slice(0, 4), slice(4, 8), slice(8, 12)
_CANONICAL = slice(0, 3)
_XX, _XY, _YY, _WEIGHT = 12, 13, 14, 15
_MOMENT_ROWS = 16


def _padded(grid: np.ndarray) -> np.ndarray:
    """`grid` (h, w, ...) with a border of zeros one pixel wide."""
    out = np.zeros((grid.shape[0] + 2, grid.shape[1] + 2) + grid.shape[2:], grid.dtype)
    out[1:-1, 1:-1] = grid
    return out


def _weighted_channels(maps: FrameMaps, reference: tuple[int, int]) -> np.ndarray:
    """Weight-premultiplied channels (w * canonical xyz, w * depth, w), (5, h + 2, w + 2) float32
    on the padded grid, relative to the values of the face pixel `reference` (row, column): the
    fit runs in float32 (half the memory traffic of float64), and coordinates relative to a face
    pixel keep its rounding near 1e-8 m. The weight is the pixel's confidence, zero off the face."""
    weight = np.where(maps.mask, maps.depth_confidence * maps.canonical_confidence, 0).astype(np.float32, copy=False)
    channels = np.zeros((5, maps.mask.shape[0] + 2, maps.mask.shape[1] + 2), np.float32)
    inside = channels[:, 1:-1, 1:-1]
    for axis in range(3):
        np.multiply(maps.canonical[..., axis] - maps.canonical[reference][axis], weight, out=inside[axis])
    np.multiply(maps.depth - maps.depth[reference], weight, out=inside[3])
    inside[4] = weight
    return channels


def _neighbourhood_moments(channels: np.ndarray) -> np.ndarray:
    """What each pixel's plane fit needs (the plane through its own values with slopes fitted
    over its 3x3 neighbourhood, weighted least squares of v - v0 = slope_x * dx + slope_y * dy),
    from the weighted `channels` (5, H, W) of a padded grid: (H * W, `_MOMENT_ROWS`) float32,
    zero on the border, one row per cell (a look-up gathers whole rows). The neighbourhood sums
    are separable: along x, then along y. Solving the fit is left to the look-up, which needs
    it at about half as many places as there are cells."""
    left, right = channels[:, :, :-2], channels[:, :, 2:]
    box_x = left + channels[:, :, 1:-1] + right
    diff_x = right - left
    sum_x = diff_x[:, :-2] + diff_x[:, 1:-1] + diff_x[:, 2:]  # sums of w * v * dx
    sum_y = box_x[:, 2:] - box_x[:, :-2]  # of w * v * dy
    weight = channels[4]
    total = box_x[4, :-2] + box_x[4, 1:-1] + box_x[4, 2:]
    damping = SLOPE_DAMPING * total
    sides_x = left[4] + right[4]
    moments = np.zeros((_MOMENT_ROWS,) + channels.shape[1:], np.float32)
    inside = moments[:, 1:-1, 1:-1]
    value = np.divide(channels[:4, 1:-1, 1:-1], np.maximum(weight[1:-1, 1:-1], 1e-12), out=inside[_VALUE])
    np.subtract(sum_x[:4], value * sum_x[4], out=inside[_MOMENT_X])
    np.subtract(sum_y[:4], value * sum_y[4], out=inside[_MOMENT_Y])
    np.add(sides_x[:-2] + sides_x[1:-1] + sides_x[2:], damping, out=inside[_XX])
    np.subtract(diff_x[4, 2:], diff_x[4, :-2], out=inside[_XY])
    np.add(box_x[4, :-2] + box_x[4, 2:], damping, out=inside[_YY])
    np.multiply(total, 1 / 9, out=inside[_WEIGHT])
    return np.ascontiguousarray(moments.reshape(_MOMENT_ROWS, -1).T)  # computed row by row, stored cell by cell


def _subpixel_step(slope_x: np.ndarray, slope_y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (dx, dy), each (n,), with slope_x*dx + slope_y*dy = target (all (3, n)),
    its length capped at `MAX_SUBPIXEL_STEP`, and that length; zero where the slopes are
    degenerate."""
    a, b, c = (np.einsum("ij,ij->j", p, q) for p, q in ((slope_x, slope_x), (slope_x, slope_y), (slope_y, slope_y)))
    u, v = np.einsum("ij,ij->j", slope_x, target), np.einsum("ij,ij->j", slope_y, target)
    determinant = a * c - b * b
    usable = determinant > 1e-6 * np.maximum(a * c, 1e-30)
    scale = np.where(usable, 1.0 / np.where(usable, determinant, 1.0), 0.0)
    step_x, step_y = (c * u - b * v) * scale, (a * v - b * u) * scale
    length = np.hypot(step_x, step_y)
    cap = np.minimum(1.0, MAX_SUBPIXEL_STEP / np.maximum(length, 1e-12))
    return step_x * cap, step_y * cap, length * cap
