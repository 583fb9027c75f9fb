"""Camera intrinsics from the network's ray map.

The depth head predicts, on a grid of cells over the image, the direction of the camera ray
through each cell (in the frame of the window's reference camera). With the image spanning
[0, 2] on both axes ("normalised image", the package's convention), a cell centre
``q = (u, v, 1)`` and its ray ``d`` satisfy ``d ~ R @ inv(K_n) @ q`` for a rotation R and an
upper-triangular K_n. Fitting the homography ``M = R @ inv(K_n)`` by weighted least squares and
splitting it with a QR decomposition gives K_n; scaling it to the frame gives pixels.

Deterministic (no RANSAC), so windowed and whole-clip inference agree exactly.
"""
from __future__ import annotations

import numpy as np

# Solutions outside these bounds come from rays that do not describe a pinhole camera.
_MIN_FOCAL_NORMALISED = 0.05  # a field of view under ~175 degrees
_MAX_FOCAL_NORMALISED = 200.0


def intrinsics_from_rays(rays: np.ndarray, confidence: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray | None:
    """(3, 3) pinhole matrix in pixels of a ``frame_size = (width, height)`` frame, or None when
    the rays do not describe a camera.

    rays: (h, w, 6) with the ray direction in channels 0-2; confidence: (h, w) weights >= 0.
    Pixel convention of the contract: pixel (row r, column c) has its centre at (x=c, y=r).
    """
    homography = _fit_homography(rays[..., :3], confidence)
    if homography is None:
        return None
    k_normalised = _split_homography(homography)
    if k_normalised is None:
        return None
    width, height = frame_size
    fx, fy = k_normalised[0, 0] * width / 2, k_normalised[1, 1] * height / 2
    cx, cy = k_normalised[0, 2] * width / 2 - 0.5, k_normalised[1, 2] * height / 2 - 0.5
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def rays_for_camera(k_normalised: np.ndarray, rotation: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The (h, w, 6) ray map an ideal camera gives (origin 0): the inverse of
    ``intrinsics_from_rays``, for tests and checks."""
    q = _cell_centres(*grid)
    directions = q @ np.linalg.inv(k_normalised).T @ rotation.T
    return np.concatenate([directions, np.zeros_like(directions)], axis=-1)


def _cell_centres(height: int, width: int) -> np.ndarray:
    """(h, w, 3) homogeneous normalised-image coordinates of the cell centres."""
    u = (2 * np.arange(width) + 1) / width
    v = (2 * np.arange(height) + 1) / height
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu, vv, np.ones_like(uu)], axis=-1)


def _fit_homography(directions: np.ndarray, confidence: np.ndarray) -> np.ndarray | None:
    """Weighted DLT: the M minimising sum w |d x (M q)|^2 with |M| = 1."""
    height, width = directions.shape[:2]
    q = _cell_centres(height, width).reshape(-1, 3)
    # Centre the coordinates for conditioning: q = shift @ q_centred.
    shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    q_centred = q - np.array([1.0, 1.0, 0.0])
    d = directions.reshape(-1, 3).astype(np.float64)
    norms = np.linalg.norm(d, axis=1)
    weights = np.where(np.isfinite(norms) & (norms > 1e-9), confidence.reshape(-1).astype(np.float64), 0.0)
    if np.count_nonzero(weights > 0) < 8:
        return None
    d = d / np.where(norms > 1e-9, norms, 1.0)[:, None]
    zeros = np.zeros_like(q_centred)
    dx, dy, dz = (d[:, i : i + 1] for i in range(3))
    rows = np.concatenate(
        [
            np.concatenate([zeros, -dz * q_centred, dy * q_centred], axis=1),
            np.concatenate([dz * q_centred, zeros, -dx * q_centred], axis=1),
        ]
    )
    w = np.concatenate([weights, weights])
    normal = (rows * w[:, None]).T @ rows
    if not np.all(np.isfinite(normal)):
        return None
    _, vectors = np.linalg.eigh(normal)
    m_centred = vectors[:, 0].reshape(3, 3)
    return m_centred @ np.linalg.inv(shift)


def _split_homography(homography: np.ndarray) -> np.ndarray | None:
    """K_n (normalised, K[2, 2] = 1) from M = s R inv(K_n), or None if M is not of that form."""
    for sign in (1.0, -1.0):
        q, upper = np.linalg.qr(sign * homography)
        signs = np.sign(np.diag(upper))
        if np.any(signs == 0):
            return None
        q, upper = q * signs, signs[:, None] * upper
        if np.linalg.det(q) > 0:
            break
    k = np.linalg.inv(upper)
    k = k / k[2, 2]
    focal = np.array([k[0, 0], k[1, 1]])
    if not np.all(np.isfinite(k)) or np.any(focal < _MIN_FOCAL_NORMALISED) or np.any(focal > _MAX_FOCAL_NORMALISED):
        return None
    return k
