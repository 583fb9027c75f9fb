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
    (Kabsch; the determinant correction keeps it a rotation)."""
    weights = weights / weights.sum()
    source_mean = weights @ source
    target_mean = weights @ target
    covariance = (target - target_mean).T @ ((source - source_mean) * weights[:, None])
    u, _, vt = np.linalg.svd(covariance)
    correction = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ correction @ vt
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = target_mean - rotation @ source_mean
    return pose


def fit_head_pose(canonical: np.ndarray, positions: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Robust rigid fit: refit `OUTLIER_ROUNDS` times without the points whose residual exceeds
    `OUTLIER_SIGMAS` robust standard deviations (and `OUTLIER_FLOOR`), so an open jaw, a blink or
    a bad pixel does not tilt the head. None when fewer than `MIN_POSE_POINTS` points are usable."""
    usable = weights > 0
    if usable.sum() < MIN_POSE_POINTS:
        return None
    inliers = usable
    pose = fit_rigid(canonical[usable], positions[usable], weights[usable])
    for _ in range(OUTLIER_ROUNDS):
        residual = np.linalg.norm(apply(pose, canonical) - positions, axis=1)
        sigma = 1.4826 * np.median(residual[usable])
        refined = usable & (residual <= max(OUTLIER_SIGMAS * sigma, OUTLIER_FLOOR))
        if refined.sum() < MIN_POSE_POINTS or np.array_equal(refined, inliers):
            break  # too few left, or the same points again: refitting would change nothing
        inliers = refined
        pose = fit_rigid(canonical[inliers], positions[inliers], weights[inliers])
    return pose


def apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`points` (..., 3) mapped by one pose."""
    return points @ pose[:3, :3].T + pose[:3, 3]


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
