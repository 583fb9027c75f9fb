"""The map from the release's canonical space to the project's template space.

The released network predicts canonical coordinates in its own FLAME-based space
(``RELEASE_SPACE_ID``); template meshes, named points and rig presets live in the template space
(``contract.CANONICAL_SPACE_ID``: MediaPipe's 478 landmarks, metres, +Y up, +Z out of the face).
The two are related by a smooth 3D warp, fitted from pairs of points: the network's canonical
coordinate read at a landmark's pixel, and that landmark's template vertex.

The warp is a similarity (Umeyama) followed by a thin-plate-spline residual
(``scipy.interpolate.RBFInterpolator``) whose smoothing is chosen by leave-one-out error.
Leave-one-out errors come in closed form (Rippa's formula for RBF systems: the error at point i
is ``c_i / inv(A)_ii``), so measuring them costs one matrix inverse instead of one fit per point.
The similarity is fitted once on all pairs; leave-one-out refits only the residual field (with
hundreds of pairs, one point moves the similarity by a negligible amount).

A fitted alignment belongs to one set of weights: it is cached as a small npz keyed by the
weights' sha256 and rebuilt from the stored pairs on load.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.spatial.distance import cdist

from ..contract import CANONICAL_SPACE_ID

RELEASE_SPACE_ID = "faceanything-flame-v1"
CACHE_FORMAT_VERSION = 1
SMOOTHING_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # in units of the normalised pairs (RMS radius 1)
MIN_PAIRS = 30
# Pairs whose leave-one-out error exceeds this many times the median (and OUTLIER_FLOOR_MM) are
# dropped once and the warp refitted: mislocated landmarks must not bend the whole face.
OUTLIER_FACTOR = 4.0
OUTLIER_FLOOR_MM = 2.0
_METRES_TO_MM = 1000.0


@dataclass
class CanonicalAlignment:
    """Release space -> template space. Build with `fit_alignment` or `CanonicalAlignment.load`."""

    source_points: np.ndarray  # (N, 3) release space
    target_points: np.ndarray  # (N, 3) template space, metres
    smoothing: float
    rejected: int = 0  # pairs dropped as outliers before this fit
    source_space: str = RELEASE_SPACE_ID
    target_space: str = CANONICAL_SPACE_ID
    scale: float = field(init=False)
    rotation: np.ndarray = field(init=False)
    translation: np.ndarray = field(init=False)
    fit_rms_mm: float = field(init=False)
    loo_errors_mm: np.ndarray = field(init=False)

    def __post_init__(self):
        self.scale, self.rotation, self.translation = similarity_fit(self.source_points, self.target_points)
        moved = self._similarity(self.source_points)
        self._centre = moved.mean(axis=0)
        self._unit = float(np.sqrt(((self.target_points - self._centre) ** 2).sum(axis=1).mean())) or 1.0
        nodes = (moved - self._centre) / self._unit
        residuals = (self.target_points - moved) / self._unit
        self._residual = RBFInterpolator(nodes, residuals, kernel="thin_plate_spline", smoothing=self.smoothing)
        self.fit_rms_mm = _rms(self.apply(self.source_points) - self.target_points) * _METRES_TO_MM
        self.loo_errors_mm = loo_errors(nodes, residuals, self.smoothing) * self._unit * _METRES_TO_MM

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) release-space points -> template space (metres)."""
        flat = np.asarray(points, np.float64).reshape(-1, 3)
        moved = self._similarity(flat)
        warped = moved + self._residual((moved - self._centre) / self._unit) * self._unit
        return warped.reshape(np.shape(points))

    def summary(self) -> dict:
        """For the capture manifest."""
        return {
            "source_space": self.source_space,
            "target_space": self.target_space,
            "pairs": int(len(self.source_points)),
            "rejected_pairs": int(self.rejected),
            "scale": float(self.scale),
            "smoothing": float(self.smoothing),
            "fit_rms_mm": round(float(self.fit_rms_mm), 3),
            "loo_rms_mm": round(_rms(self.loo_errors_mm[:, None]), 3),
            "loo_p95_mm": round(float(np.percentile(self.loo_errors_mm, 95)), 3),
        }

    def save(self, path: Path, weights_sha256: str) -> None:
        """Write the pairs (the warp is rebuilt from them) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(
            partial,
            format_version=CACHE_FORMAT_VERSION,
            weights_sha256=weights_sha256,
            source_space=self.source_space,
            target_space=self.target_space,
            source_points=self.source_points,
            target_points=self.target_points,
            smoothing=self.smoothing,
            rejected=self.rejected,
        )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path, weights_sha256: str) -> CanonicalAlignment | None:
        """The cached alignment of these weights, or None (no cache, other weights, old format)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format_version"]) != CACHE_FORMAT_VERSION or str(data["weights_sha256"]) != weights_sha256:
                    return None
                return cls(
                    source_points=data["source_points"],
                    target_points=data["target_points"],
                    smoothing=float(data["smoothing"]),
                    rejected=int(data["rejected"]),
                    source_space=str(data["source_space"]),
                    target_space=str(data["target_space"]),
                )
        except (OSError, KeyError, ValueError):
            return None

    def _similarity(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def fit_alignment(source: np.ndarray, target: np.ndarray) -> CanonicalAlignment:
    """The warp taking ``source`` (N, 3) onto ``target`` (N, 3), smoothing chosen by
    leave-one-out error, gross outliers dropped once. Needs at least MIN_PAIRS pairs."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if len(source) < MIN_PAIRS:
        raise ValueError(f"{len(source)} point pairs; the alignment needs at least {MIN_PAIRS}")
    best = _best_smoothing(source, target)
    errors = best.loo_errors_mm
    outliers = errors > max(OUTLIER_FACTOR * float(np.median(errors)), OUTLIER_FLOOR_MM)
    if outliers.any() and np.count_nonzero(~outliers) >= MIN_PAIRS:
        best = _best_smoothing(source[~outliers], target[~outliers], rejected=int(outliers.sum()))
    return best


def loo_errors(nodes: np.ndarray, values: np.ndarray, smoothing: float) -> np.ndarray:
    """Leave-one-out error norms (N,) of a thin-plate-spline fit with degree-1 polynomial and
    ``smoothing`` (the model of ``RBFInterpolator(kernel="thin_plate_spline")``), in closed form."""
    n = len(nodes)
    distances = cdist(nodes, nodes)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.where(distances > 0, distances**2 * np.log(distances), 0.0)
    polynomial = np.hstack([np.ones((n, 1)), nodes])
    system = np.zeros((n + 4, n + 4))
    system[:n, :n] = kernel + smoothing * np.eye(n)
    system[:n, n:] = polynomial
    system[n:, :n] = polynomial.T
    inverse = np.linalg.inv(system)
    coefficients = inverse[:, :n] @ values
    errors = coefficients[:n] / np.diag(inverse)[:n, None]
    return np.linalg.norm(errors, axis=1)


def similarity_fit(
    source: np.ndarray, target: np.ndarray, with_scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares (s, R, t) with target ~ s R source + t (Umeyama); s = 1 when not with_scale."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a, b = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(b.T @ a / len(source))
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ flip @ vt
    variance = (a**2).sum() / len(source)
    scale = float((singular * np.diag(flip)).sum() / variance) if with_scale and variance > 0 else 1.0
    return scale, rotation, target_mean - scale * rotation @ source_mean


def sample_bilinear(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (N, C) of an (H, W, C) map at pixel positions (N, 2) (x, y; pixel centres at
    integers), and whether each point lies inside the map."""
    height, width = image.shape[:2]
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    x, y = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(int), width - 2).clip(0)
    y0 = np.minimum(np.floor(y).astype(int), height - 2).clip(0)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, inside


def collect_pairs(
    observations: list[tuple[np.ndarray, np.ndarray]], template_vertices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (source (N, 3), target (N, 3), landmark indices (N,)) from per-frame observations
    ``(landmark index (M,), canonical samples (M, 3))``: each landmark seen in at least one frame
    gives one pair, the per-axis median of its samples (robust to a frame's mislocated landmark)."""
    samples: dict[int, list[np.ndarray]] = {}
    for indices, canonical in observations:
        for index, point in zip(indices.tolist(), canonical):
            samples.setdefault(index, []).append(point)
    indices = np.array(sorted(samples), dtype=np.int64)
    source = np.array([np.median(samples[i], axis=0) for i in indices]).reshape(-1, 3)
    return source, np.asarray(template_vertices, np.float64)[indices].reshape(-1, 3), indices


def _best_smoothing(source: np.ndarray, target: np.ndarray, rejected: int = 0) -> CanonicalAlignment:
    fits = [CanonicalAlignment(source, target, smoothing, rejected) for smoothing in SMOOTHING_GRID]
    return min(fits, key=lambda fit: _rms(fit.loo_errors_mm[:, None]))


def _rms(differences: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(differences) ** 2).sum(axis=-1).mean())) if np.size(differences) else 0.0
