"""A z-buffered triangle rasteriser in numpy (no OpenGL).

Pixel centres sit at integer coordinates (OpenCV convention): frame pixel (row r, column c) is
the point (x=c, y=r). A pixel belongs to a triangle when its centre lies inside or on the
triangle's edges; where several triangles cover it, the nearest (smallest depth) wins.

Depth and attributes are interpolated perspective-correctly: 1/z and attribute/z are linear in
screen space, so the depth of a planar triangle is exact (the ray-plane intersection) and so
are attributes that are affine functions of the 3D point.

Vectorised: for every triangle the pixel rows of its bounding box are enumerated, on each row
the span of pixel centres inside the triangle is solved for, and the (triangle, pixel)
fragments of all spans are z-tested at once (``np.minimum.at``). Only the winning fragments are
interpolated. Triangles are processed in batches so that memory stays bounded on 4K frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CANDIDATES = 1 << 19
"""Pixels per batch: bounds the temporaries to some 100 MB on 4K frames."""

INSIDE_TOLERANCE = 1e-9
"""Barycentric slack so that pixel centres exactly on a shared edge are never lost to rounding."""


@dataclass
class Raster:
    """Rasterised mesh over ``window = (x0, y0, x1, y1)`` (half-open); map pixel [r, c] is frame
    pixel (x0 + c, y0 + r).

    triangle:    (h, w) int32, index of the visible triangle, -1 where none.
    depth:       (h, w) float32, interpolated depth; 0 where no triangle.
    attributes:  (h, w, C) float32, interpolated vertex attributes; 0 where no triangle.
    barycentric: (h, w, 3) float32, perspective-correct weights of the visible triangle's
                 vertices (0 where none), or None when not asked for.
    """

    window: tuple[int, int, int, int]
    triangle: np.ndarray
    depth: np.ndarray
    attributes: np.ndarray
    barycentric: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        return self.triangle >= 0


def mesh_window(points2d: np.ndarray, frame_size: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """The pixels whose centres the points' bounding box can cover, plus ``margin``, clipped to
    the frame ``(width, height)``; (0, 0, 0, 0) when that is empty."""
    width, height = frame_size
    low = np.ceil(points2d.min(axis=0)).astype(int) - margin
    high = np.floor(points2d.max(axis=0)).astype(int) + 1 + margin
    x0, y0 = max(low[0], 0), max(low[1], 0)
    x1, y1 = min(high[0], width), min(high[1], height)
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0)
    return (int(x0), int(y0), int(x1), int(y1))


def rasterize(
    points2d: np.ndarray,
    depth: np.ndarray,
    triangles: np.ndarray,
    window: tuple[int, int, int, int],
    attributes: np.ndarray | None = None,
    barycentrics: bool = False,
) -> Raster:
    """Rasterise a mesh given in screen space.

    points2d:     (V, 2) vertex positions in pixels.
    depth:        (V,) vertex depths (camera z, > 0); triangles with a vertex at z <= 0 are skipped.
    triangles:    (F, 3) vertex indices, either winding (no back-face culling).
    window:       (x0, y0, x1, y1) region to fill.
    attributes:   (V, C) per-vertex values to interpolate, or None.
    barycentrics: also return the perspective-correct barycentrics.
    """
    x0, y0, x1, y1 = window
    shape = (max(y1 - y0, 0), max(x1 - x0, 0))
    triangles = np.asarray(triangles, np.int64).reshape(-1, 3)
    attributes = np.zeros((len(points2d), 0)) if attributes is None else np.asarray(attributes, np.float64)
    setup = _TriangleSetup(np.asarray(points2d, np.float64), np.asarray(depth, np.float64), triangles, window)

    nearest_depth = np.full(shape[0] * shape[1], np.inf)
    nearest_triangle = np.full(shape[0] * shape[1], -1, np.int64)
    for batch in setup.batches():
        pixel, tri, z = setup.covered(batch)
        np.minimum.at(nearest_depth, pixel, z)
        wins = z == nearest_depth[pixel]  # exact ties (shared edges) are equally right
        nearest_triangle[pixel[wins]] = tri[wins]

    pixel = np.flatnonzero(nearest_triangle >= 0)
    corner_values = attributes[triangles].transpose(1, 0, 2)  # (3 corners, F, C)
    if barycentrics:
        identity = np.broadcast_to(np.eye(3)[:, None, :], (3, len(triangles), 3))
        corner_values = np.concatenate([identity, corner_values], axis=2)
    depth_map = np.zeros(shape[0] * shape[1], np.float32)
    values_map = np.zeros((shape[0] * shape[1], corner_values.shape[2]), np.float32)
    for start in range(0, len(pixel), MAX_CANDIDATES):
        chunk = pixel[start:start + MAX_CANDIDATES]
        depth_map[chunk], values = setup.interpolate(chunk, nearest_triangle[chunk], corner_values)
        values_map[chunk] = values.T
    values_map = values_map.reshape(shape + (-1,))
    return Raster(
        window=tuple(int(v) for v in window),
        triangle=nearest_triangle.astype(np.int32).reshape(shape),
        depth=depth_map.reshape(shape),
        attributes=np.ascontiguousarray(values_map[..., 3:]) if barycentrics else values_map,
        barycentric=np.ascontiguousarray(values_map[..., :3]) if barycentrics else None,
    )


class _TriangleSetup:
    """Per triangle: its pixel bounding box (empty for triangles that are degenerate, behind the
    camera or outside the window) and the affine functions of the pixel position (x, y) that
    give its screen-space barycentrics and its inverse depth. Quantities are kept as 1D arrays
    over triangles: numpy gathers those much faster than rows."""

    def __init__(self, points2d, depth, triangles, window):
        x0, y0, x1, y1 = window
        self.origin = (x0, y0)
        self.window_width = max(x1 - x0, 0)
        x, y = np.ascontiguousarray(points2d.T)
        corners = [triangles[:, k] for k in range(3)]
        ax, bx, cx = (x[i] for i in corners)
        ay, by, cy = (y[i] for i in corners)
        self.low_x = np.maximum(np.ceil(np.minimum(np.minimum(ax, bx), cx)), x0).astype(np.int64)
        self.low_y = np.maximum(np.ceil(np.minimum(np.minimum(ay, by), cy)), y0).astype(np.int64)
        self.high_x = np.minimum(np.floor(np.maximum(np.maximum(ax, bx), cx)), x1 - 1).astype(np.int64)
        high_y = np.minimum(np.floor(np.maximum(np.maximum(ay, by), cy)), y1 - 1).astype(np.int64)
        doubled_area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        vertex_depth = depth[triangles.T]  # (3 corners, F)
        usable = ((np.abs(doubled_area) > 1e-12) & (self.high_x >= self.low_x) & (high_y >= self.low_y)
                  & (vertex_depth > 0).all(axis=0))
        self.rows = np.where(usable, high_y - self.low_y + 1, 0)
        self.inverse_vertex_depth = np.divide(1.0, vertex_depth, out=np.zeros_like(vertex_depth), where=usable)
        area = np.where(usable, doubled_area, 1.0)
        # barycentric of corner k = gradients[0, k] * x + gradients[1, k] * y + gradients[2, k]
        gx = np.stack([by - cy, cy - ay, ay - by]) / area
        gy = np.stack([cx - bx, ax - cx, bx - ax]) / area
        g0 = np.eye(3)[:, :1] - gx * ax - gy * ay
        self.gradients = np.stack([gx, gy, g0])  # (x / y / constant, corner, F)
        # 1/z is affine in (x, y) too
        self.zx, self.zy, self.z0 = (self.gradients * self.inverse_vertex_depth).sum(axis=1)

    def batches(self):
        """Slices of the triangles whose bounding boxes hold at most MAX_CANDIDATES pixels (a
        single larger triangle is its own batch)."""
        ends = np.cumsum(self.rows * (self.high_x - self.low_x + 1))
        start = 0
        while start < len(ends):
            already = ends[start - 1] if start else 0
            stop = max(int(np.searchsorted(ends, already + MAX_CANDIDATES, side="right")), start + 1)
            yield slice(start, stop)
            start = stop

    def covered(self, batch: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(window pixel index, triangle index, depth) of every pixel centre inside a triangle
        of the batch, enumerated row by row over each triangle's span."""
        rows = self.rows[batch]
        row_triangle = np.repeat(np.arange(batch.start, batch.stop), rows)
        row_y = self.low_y[row_triangle] + _ranks(rows)
        span_start, span_width = self._spans(row_triangle, row_y)
        pixel_row = np.repeat(np.arange(len(row_triangle)), span_width)
        column = _ranks(span_width)
        row_first_pixel = (row_y - self.origin[1]) * self.window_width + (span_start - self.origin[0])
        slope = self.zx[row_triangle]
        row_inverse_depth = slope * span_start + self.zy[row_triangle] * row_y + self.z0[row_triangle]
        z = 1.0 / (row_inverse_depth[pixel_row] + slope[pixel_row] * column)
        return row_first_pixel[pixel_row] + column, row_triangle[pixel_row], z

    def _spans(self, row_triangle: np.ndarray, row_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First pixel column and pixel count of each triangle row: where all three
        barycentrics are >= -INSIDE_TOLERANCE, within the bounding box."""
        lower = self.low_x[row_triangle].astype(np.float64)
        upper = self.high_x[row_triangle].astype(np.float64)
        empty = np.zeros(len(row_triangle), bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            for gx, gy, g0 in self.gradients.transpose(1, 0, 2):
                gx = gx[row_triangle]
                offset = gy[row_triangle] * row_y + g0[row_triangle] + INSIDE_TOLERANCE
                bound = -offset / gx  # where barycentric k + tolerance = gx * x + offset crosses 0
                np.maximum(lower, bound, out=lower, where=gx > 0)
                np.minimum(upper, bound, out=upper, where=gx < 0)
                empty |= (gx == 0) & (offset < 0)
        start = np.ceil(lower).astype(np.int64)
        width = np.floor(upper).astype(np.int64) - start + 1
        width[empty | (width < 0)] = 0
        return start, width

    def interpolate(self, pixel: np.ndarray, tri: np.ndarray, corner_values: np.ndarray):
        """Depth (N,) and perspective-correct values (C, N) at window pixels ``pixel`` seen in
        triangles ``tri``; ``corner_values`` (3, F, C) holds the values at each triangle's
        corners. value/z is affine in (x, y) over a triangle, so each channel is one affine
        function per triangle, evaluated at the pixel and multiplied by z."""
        row, column = np.divmod(pixel, max(self.window_width, 1))
        px = (column + self.origin[0]).astype(np.float64)
        py = (row + self.origin[1]).astype(np.float64)
        z = 1.0 / (self.zx[tri] * px + self.zy[tri] * py + self.z0[tri])
        over_depth = corner_values.transpose(0, 2, 1) * self.inverse_vertex_depth[:, None, :]  # (3 corners, C, F)
        per_triangle = (self.gradients[:, :, None, :] * over_depth).sum(axis=1)  # (x / y / constant, C, F)
        affine = np.take(per_triangle, tri, axis=2)
        return z, (affine[0] * px + affine[1] * py + affine[2]) * z


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for every n in ``counts``, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
