"""Closest points on a triangle mesh, as (triangle, barycentric weights): how one mesh's
per-vertex data (expression offsets) is carried onto another mesh's vertices."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

CANDIDATE_TRIANGLES = 24


def closest_on_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                       candidates: int = CANDIDATE_TRIANGLES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point, the closest point on the mesh among its `candidates` triangles of nearest
    centroid. Returns (triangle index (N,), barycentric weights (N, 3), distance (N,))."""
    points = np.asarray(points, np.float64)
    corners = np.asarray(vertices, np.float64)[triangles]  # (F, 3, 3)
    k = min(candidates, len(triangles))
    _, nearest = cKDTree(corners.mean(axis=1)).query(points, k=k)
    nearest = nearest.reshape(len(points), k)
    weights = _closest_barycentric(points[:, None, :], corners[nearest])  # (N, k, 3)
    on_surface = np.einsum("nkc,nkcd->nkd", weights, corners[nearest])
    distance = np.linalg.norm(on_surface - points[:, None, :], axis=2)
    best = distance.argmin(axis=1)
    rows = np.arange(len(points))
    return nearest[rows, best], weights[rows, best], distance[rows, best]


def interpolate(values: np.ndarray, triangles: np.ndarray, triangle: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-vertex `values` (..., V, D) carried to surface points given as (triangle, weights)."""
    corners = np.asarray(values)[..., triangles[triangle], :]  # (..., N, 3, D)
    return np.einsum("nc,...ncd->...nd", weights, corners)


def _closest_barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric weights of the closest point of each triangle to p (Ericson, Real-Time
    Collision Detection 5.1.5), vectorised; p (..., 3) broadcasts against tri (..., 3, 3)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        total = va + vb + vc
        v_in, w_in = vb / total, vc / total
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    weights = np.stack([1 - v_in - w_in, v_in, w_in], axis=-1)
    cases = [  # checked in reverse priority: later assignments win
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([0 * t_bc, 1 - t_bc, t_bc], -1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, 0 * t_ac, t_ac], -1)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, 0 * t_ab], -1)),
        ((d6 >= 0) & (d5 <= d6), np.broadcast_to([0.0, 0.0, 1.0], weights.shape)),
        ((d3 >= 0) & (d4 <= d3), np.broadcast_to([0.0, 1.0, 0.0], weights.shape)),
        ((d1 <= 0) & (d2 <= 0), np.broadcast_to([1.0, 0.0, 0.0], weights.shape)),
    ]
    for condition, value in cases:
        weights = np.where(condition[..., None], value, weights)
    return np.nan_to_num(weights)
