"""The reconstructed mesh in canonical space: the template subdivided, or a grid seeded on a frame.

Every vertex is identified by its canonical coordinate; tracking looks that coordinate up in
each frame. Triangles are counter-clockwise seen from outside (the side the camera sees).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..contract import FrameMaps
from ..errors import UserError

TEMPLATE_SUBDIVISIONS = {"low": 0, "medium": 1, "high": 2}
DENSE_VERTEX_TARGETS = {"low": 500, "medium": 2000, "high": 8000}
RIGID_REACH = 0.008
"""Vertices within this canonical distance (about one template edge) of the template's rigid
landmarks (forehead, nose, eye corners, cheekbones) drive the head pose."""
LONG_EDGE_FACTOR = 4.0
"""A dense triangle whose longest canonical edge exceeds this many times the median is dropped:
it spans a depth discontinuity (the nose in front of a cheek)."""


@dataclass
class Mesh:
    canonical: np.ndarray  # (V, 3) float64 canonical coordinate of each vertex
    triangles: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside
    uv: np.ndarray  # (V, 2) float32 in [0, 1], v up

    @property
    def vertex_count(self) -> int:
        return int(self.canonical.shape[0])


def template_mesh(template, density: str) -> Mesh:
    """The template's topology subdivided `TEMPLATE_SUBDIVISIONS[density]` times.

    `template` is a `model_runtime.template.FaceTemplate` (or any object with its `vertices`,
    `triangles` and `uv`). The original vertices keep their indices, so landmark indices stay valid.
    """
    mesh = Mesh(
        canonical=np.asarray(template.vertices, np.float64),
        triangles=np.asarray(template.triangles, np.int32),
        uv=np.asarray(template.uv, np.float32),
    )
    for _ in range(TEMPLATE_SUBDIVISIONS[density]):
        mesh = subdivide(mesh)
    return mesh


def subdivide(mesh: Mesh) -> Mesh:
    """Split every triangle into four at its edge midpoints (positions and UVs interpolated
    linearly, so new vertices lie on the old surface; old vertices keep their indices)."""
    triangles = mesh.triangles
    corners = np.stack([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]], axis=1)  # (F, 3, 2)
    ends = np.sort(corners.reshape(-1, 2), axis=1).astype(np.int64)
    keys, edge_of = np.unique(ends[:, 0] * mesh.vertex_count + ends[:, 1], return_inverse=True)  # one number per edge
    edges = np.stack(np.divmod(keys, mesh.vertex_count), axis=1)
    midpoint = mesh.vertex_count + edge_of.reshape(-1, 3)  # (F, 3): midpoints of edges ab, bc, ca
    a, b, c = triangles.T
    ab, bc, ca = midpoint.T
    new_triangles = np.concatenate(
        [np.stack(corner, axis=1) for corner in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
    )
    return Mesh(
        canonical=np.concatenate([mesh.canonical, mesh.canonical[edges].mean(axis=1)]),
        triangles=new_triangles.astype(np.int32),
        uv=np.concatenate([mesh.uv, mesh.uv[edges].mean(axis=1)]).astype(np.float32),
    )


def dense_mesh(maps: FrameMaps, density: str, frame_index: int) -> Mesh:
    """A mesh seeded on one frame's face pixels on a regular pixel grid.

    The grid spacing is chosen so that about `DENSE_VERTEX_TARGETS[density]` face pixels fall on
    it; each seeded pixel becomes a vertex carrying the canonical coordinate under it. Grid cells
    become two triangles each where all three corners are face pixels, minus triangles spanning a
    depth discontinuity (see `LONG_EDGE_FACTOR`). UVs are the frame's normalised pixel positions,
    so the frame itself is a texture for the mesh.
    """
    if not maps.has_face:
        raise UserError(
            f"frame {frame_index} has no face to seed the dense mesh on",
            "Choose a reference frame with a face, or use --mesh template.",
            code="bad_option",
        )
    height, width = maps.mask.shape
    spacing = max(1.0, float(np.sqrt(maps.mask.sum() / DENSE_VERTEX_TARGETS[density])))
    rows = np.unique(np.round(np.arange(0, height - 0.5, spacing)).astype(int))
    cols = np.unique(np.round(np.arange(0, width - 0.5, spacing)).astype(int))
    seeded = maps.mask[np.ix_(rows, cols)]
    vertex_id = np.full(seeded.shape, -1, np.int64)
    vertex_id[seeded] = np.arange(int(seeded.sum()))
    grid_rows, grid_cols = np.nonzero(seeded)
    canonical = maps.canonical[rows[grid_rows], cols[grid_cols]].astype(np.float64)
    triangles = _grid_triangles(vertex_id)
    triangles = triangles[~_spans_discontinuity(canonical, triangles)]
    if len(triangles) == 0:
        raise UserError(
            f"the face in frame {frame_index} is too small to seed a dense mesh on ({int(maps.mask.sum())} face pixels)",
            "Choose a reference frame where the face is larger, or use --mesh template.",
            code="bad_option",
        )
    x0, y0 = maps.window[:2]
    frame_width, frame_height = maps.frame_size
    uv = np.stack(
        [(cols[grid_cols] + x0 + 0.5) / frame_width, 1.0 - (rows[grid_rows] + y0 + 0.5) / frame_height], axis=1
    )
    return _without_unused_vertices(Mesh(canonical, triangles.astype(np.int32), uv.astype(np.float32)))


def rigid_vertices(mesh: Mesh, template) -> np.ndarray | None:
    """Vertices that move with the skull (bool (V,)), from the template's rigid landmarks; None
    without a template (the head pose then uses every vertex, with outlier rejection)."""
    if template is None:
        return None
    landmarks = np.asarray(template.vertices, np.float64)[np.asarray(template.rigid)]
    distance, _ = cKDTree(landmarks).query(mesh.canonical, distance_upper_bound=RIGID_REACH)
    return np.isfinite(distance)


def _grid_triangles(vertex_id: np.ndarray) -> np.ndarray:
    """Two triangles per grid cell (top-left, bottom-left, top-right and top-right, bottom-left,
    bottom-right), counter-clockwise seen from the camera, kept where all corners are vertices."""
    top_left, top_right = vertex_id[:-1, :-1], vertex_id[:-1, 1:]
    bottom_left, bottom_right = vertex_id[1:, :-1], vertex_id[1:, 1:]
    candidates = np.concatenate(
        [
            np.stack([top_left, bottom_left, top_right], axis=-1).reshape(-1, 3),
            np.stack([top_right, bottom_left, bottom_right], axis=-1).reshape(-1, 3),
        ]
    )
    return candidates[(candidates >= 0).all(axis=1)]


def _spans_discontinuity(canonical: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    if len(triangles) == 0:
        return np.zeros(0, bool)
    corners = canonical[triangles]
    longest = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
    return longest > LONG_EDGE_FACTOR * np.median(longest)


def _without_unused_vertices(mesh: Mesh) -> Mesh:
    used = np.zeros(mesh.vertex_count, bool)
    used[mesh.triangles.ravel()] = True
    new_index = np.cumsum(used) - 1
    return Mesh(mesh.canonical[used], new_index[mesh.triangles].astype(np.int32), mesh.uv[used])
