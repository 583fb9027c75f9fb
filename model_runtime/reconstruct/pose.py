"""Rigid head pose: canonical -> camera, fitted per frame and interpolated where there is no face.

Poses are (4, 4) float64 matrices ``[[R, t], [0, 0, 0, 1]]`` with ``camera = R @ canonical + t``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

MIN_POSE_POINTS = 6
"""Fewer seen points than this give no pose (the frame is then treated as one without a face)."""
OUTLIER_ROUNDS = 3
OUTLIER_SIGMAS = 3.0
OUTLIER_FLOOR = 0.002
"""Residuals below this (metres in a metric canonical space) are never outliers: it covers the
few millimetres by which a real face differs from the template."""


def fit_rigid(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares rotation and translation (no scale) taking `source` to `target`
    (Kabsch; the determinant correction keeps it a rotation). Points are (..., P, 3) and weights
    (..., P), with any leading (frame) dimensions; a point of weight 0 takes no part."""
    weights = weights / weights.sum(axis=-1, keepdims=True)
    source_mean = np.einsum("...p,...pi->...i", weights, source)
    target_mean = np.einsum("...p,...pi->...i", weights, target)
    source_centred = source - source_mean[..., None, :]
    covariance = np.einsum("...pi,...pj->...ij", target - target_mean[..., None, :], source_centred * weights[..., None])
    u, _, vt = np.linalg.svd(covariance)
    rotation = u @ vt
    rotation = u @ (np.sign(np.linalg.det(rotation))[..., None, None] * _FLIP_LAST + _KEEP_FIRST_TWO) @ vt
    pose = np.zeros(weights.shape[:-1] + (4, 4))
    pose[..., :3, :3] = rotation
    pose[..., :3, 3] = target_mean - np.einsum("...ij,...j->...i", rotation, source_mean)
    pose[..., 3, 3] = 1.0
    return pose


_KEEP_FIRST_TWO = np.diag([1.0, 1.0, 0.0])
_FLIP_LAST = np.diag([0.0, 0.0, 1.0])


def fit_head_pose(canonical: np.ndarray, positions: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Robust rigid fit: refit `OUTLIER_ROUNDS` times without the points whose residual exceeds
    `OUTLIER_SIGMAS` robust standard deviations (and `OUTLIER_FLOOR`), so an open jaw, a blink or
    a bad pixel does not tilt the head. None when fewer than `MIN_POSE_POINTS` points are usable."""
    if (weights > 0).sum() < MIN_POSE_POINTS:
        return None
    return fit_head_poses(canonical, positions[None], weights[None])[0]


def fit_head_poses(canonical: np.ndarray, positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`fit_head_pose` for F frames at once (a few numpy calls for all of them instead of a
    few dozen each): `canonical` (P, 3) or (F, P, 3), `positions` (F, P, 3), `weights` (F, P),
    every frame with at least `MIN_POSE_POINTS` usable points. Returns (F, 4, 4)."""
    usable = weights > 0
    inliers = usable
    pose = fit_rigid(canonical, positions, weights)
    for _ in range(OUTLIER_ROUNDS):
        residual = np.linalg.norm(apply(pose, canonical) - positions, axis=-1)
        sigma = 1.4826 * np.nanmedian(np.where(usable, residual, np.nan), axis=-1)
        refined = usable & (residual <= np.maximum(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR)[:, None])
        # A frame whose points did not change, or would be too few, keeps its pose.
        changed = (refined.sum(axis=-1) >= MIN_POSE_POINTS) & (refined != inliers).any(axis=-1)
        if not changed.any():
            break
        inliers = np.where(changed[:, None], refined, inliers)
        source = canonical if canonical.ndim == 2 else canonical[changed]
        pose[changed] = fit_rigid(source, positions[changed], np.where(inliers[changed], weights[changed], 0.0))
    return pose


def apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`points` (..., P, 3) mapped by poses (..., 4, 4)."""
    return np.einsum("...ij,...pj->...pi", pose[..., :3, :3], points) + pose[..., None, :3, 3]


def interpolate_poses(poses: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Poses (T, 4, 4) with the unknown frames filled: rotations slerped and translations
    interpolated linearly between the nearest known frames, held before the first and after the
    last. Needs at least one known frame."""
    frames = np.flatnonzero(known)
    filled = poses.copy()
    missing = np.flatnonzero(~known)
    if missing.size == 0:
        return filled
    times = np.clip(missing, frames[0], frames[-1])
    if frames.size == 1:
        filled[missing] = poses[frames[0]]
        return filled
    rotations = Slerp(frames, Rotation.from_matrix(poses[frames, :3, :3]))(times)
    filled[missing, :3, :3] = rotations.as_matrix()
    for axis in range(3):
        filled[missing, axis, 3] = np.interp(times, frames, poses[frames, axis, 3])
    filled[missing, 3] = [0.0, 0.0, 0.0, 1.0]
    return filled
