"""The accuracy metrics of the benchmark, one definition each (numpy only).

Conventions: tracks are arrays over (frame, point, coordinate); `valid` masks are (frame, point)
bool; a missing prediction is NaN. Pixels follow the runtime (pixel centres at integer
coordinates); distances in 3D are metres in, millimetres out where the name says ``_mm``.

Depth (`depth_errors`), on the pixels where both the ground truth and the prediction have a
face: RMSE (mm) and AbsRel = mean(|d_pred - d_true| / d_true), either as predicted or after
scaling each frame's prediction by median(d_true) / median(d_pred) (monocular depth is often
right only up to scale; both are reported).

2D correspondence (`end_point_errors`, `survival`, `errors_by_motion`): points are seeded on
frame 0 and followed; the end-point error is the pixel distance between the tracked and the
true position on each frame where the true point is visible. A track *fails* on the first
frame after the seed where the point is visible but the method has no position or is more than
`threshold` pixels off; its survival is the fraction of the frames after the seed before that
failure (1 = never failed), averaged over points (as in PIPs, Harley et al. 2022). Motion size is
how far the true point moved since the previous frame (pixels).

3D (`aligned_point_errors`): on each frame the predicted points are rigidly aligned (rotation
and translation, no scale; Kabsch) to the true ones over the valid points, then the distance of
each point is taken. With ``scale=True`` the alignment also scales (Umeyama): what is left is the
error of the face's shape, without the error of its size and distance, which one view of a face
of unknown size cannot tell apart.

Jitter (`acceleration`, `jitter`): the frame-to-frame acceleration of a track is
|p[t+1] - 2 p[t] + p[t-1]| (pixels per frame squared); jitter is its mean over every frame
triple in which the track is valid. On synthetic clips the same number for the ground truth
(the motion's own acceleration) and for the error track (predicted minus true, the jitter the
method adds) are reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per-frame motion bins (pixels per frame) for `errors_by_motion`.
MOTION_BINS_PX = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)


@dataclass
class DepthErrors:
    rmse_mm: float
    abs_rel: float
    pixels: int


def depth_errors(predicted: np.ndarray, truth: np.ndarray, median_scaling: bool) -> DepthErrors:
    """Depth errors of one frame; `predicted` and `truth` are metres, 0 (or NaN) where absent."""
    predicted = np.asarray(predicted, np.float64)
    truth = np.asarray(truth, np.float64)
    both = (np.nan_to_num(predicted) > 0) & (np.nan_to_num(truth) > 0)
    if not both.any():
        return DepthErrors(float("nan"), float("nan"), 0)
    estimate, reference = predicted[both], truth[both]
    if median_scaling:
        estimate = estimate * (np.median(reference) / np.median(estimate))
    difference = estimate - reference
    return DepthErrors(
        rmse_mm=float(np.sqrt(np.mean(difference**2)) * 1000.0),
        abs_rel=float(np.mean(np.abs(difference) / reference)),
        pixels=int(both.sum()),
    )


def pooled_depth_errors(frames: list[DepthErrors]) -> DepthErrors:
    """Combine per-frame depth errors as if all their pixels were one set (pixel-weighted)."""
    used = [f for f in frames if f.pixels > 0]
    if not used:
        return DepthErrors(float("nan"), float("nan"), 0)
    weights = np.array([f.pixels for f in used], np.float64)
    rmse = np.sqrt(np.sum(weights * np.array([f.rmse_mm for f in used]) ** 2) / weights.sum())
    abs_rel = np.sum(weights * np.array([f.abs_rel for f in used])) / weights.sum()
    return DepthErrors(float(rmse), float(abs_rel), int(weights.sum()))


def end_point_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T, N) pixel distances between predicted and true tracks (T, N, 2); NaN where predicted is missing."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(truth, np.float64), axis=-1)


def mean_valid(values: np.ndarray, valid: np.ndarray) -> float:
    """Mean of the finite `values` where `valid`; NaN when there are none."""
    chosen = np.asarray(values)[np.asarray(valid, bool) & np.isfinite(values)]
    return float(chosen.mean()) if chosen.size else float("nan")


def per_point_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N,) mean over frames of each point's finite `values` (T, N) where `valid`; NaN where none."""
    use = np.asarray(valid, bool) & np.isfinite(values)
    counts = use.sum(axis=0)
    sums = np.where(use, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def survival(errors: np.ndarray, visible: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) survival of each track (see the module docstring); frame 0 is the seed frame.

    errors: (T, N) end-point errors, NaN where the method has no position.
    visible: (T, N) the true point is visible.
    """
    errors = np.asarray(errors, np.float64)[1:]
    visible = np.asarray(visible, bool)[1:]
    if errors.shape[0] == 0:
        return np.ones(errors.shape[1])
    failed = visible & ~(errors <= threshold)  # NaN compares False: a missing position fails
    first_failure = np.where(failed.any(axis=0), failed.argmax(axis=0), errors.shape[0])
    return first_failure / errors.shape[0]


def errors_by_motion(errors: np.ndarray, true_tracks: np.ndarray, valid: np.ndarray,
                     bins=MOTION_BINS_PX) -> list[tuple[float, float, float, int]]:
    """Mean error per bin of true per-frame motion: [(low, high, mean error, count)] (frames 1..T-1)."""
    motion = np.linalg.norm(np.diff(np.asarray(true_tracks, np.float64), axis=0), axis=-1)
    errors = np.asarray(errors, np.float64)[1:]
    usable = np.asarray(valid, bool)[1:] & np.isfinite(errors)
    rows = []
    for low, high in zip(bins[:-1], bins[1:]):
        chosen = usable & (motion >= low) & (motion < high)
        rows.append((float(low), float(high), float(errors[chosen].mean()) if chosen.any() else float("nan"),
                     int(chosen.sum())))
    return rows


def rigid_align(source: np.ndarray, target: np.ndarray, scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (times a scale s when `scale`) and translation t minimising
    sum |s R source_i + t - target_i|^2 (Kabsch / Umeyama, no reflection)."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - target_mean).T @ (source - source_mean)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag([1.0, 1.0, sign]) @ vt
    if scale:
        spread = ((source - source_mean) ** 2).sum()
        rotation = rotation * ((singular * [1.0, 1.0, sign]).sum() / spread if spread > 0 else 1.0)
    return rotation, target_mean - rotation @ source_mean


def aligned_point_errors(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray, scale: bool = False) -> np.ndarray:
    """(T, N) distances (metres) after a per-frame rigid (with `scale`: similarity) alignment over
    the valid points; NaN where not valid or where a frame has fewer than 3 valid points."""
    predicted = np.asarray(predicted, np.float64)
    truth = np.asarray(truth, np.float64)
    valid = np.asarray(valid, bool) & np.isfinite(predicted).all(axis=-1)
    errors = np.full(valid.shape, np.nan)
    for frame in range(len(predicted)):
        chosen = valid[frame]
        if chosen.sum() < 3:
            continue
        rotation, translation = rigid_align(predicted[frame, chosen], truth[frame, chosen], scale)
        moved = predicted[frame, chosen] @ rotation.T + translation
        errors[frame, chosen] = np.linalg.norm(moved - truth[frame, chosen], axis=1)
    return errors


def acceleration(tracks: np.ndarray) -> np.ndarray:
    """(T-2, N) |p[t+1] - 2 p[t] + p[t-1]| of tracks (T, N, D); NaN where any of the three is missing."""
    tracks = np.asarray(tracks, np.float64)
    return np.linalg.norm(tracks[2:] - 2 * tracks[1:-1] + tracks[:-2], axis=-1)


def jitter(tracks: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean acceleration over the frame triples where the track is valid on all three frames."""
    accelerations = acceleration(tracks)
    if valid is None:
        return mean_valid(accelerations, np.ones(accelerations.shape, bool))
    valid = np.asarray(valid, bool)
    return mean_valid(accelerations, valid[2:] & valid[1:-1] & valid[:-2])
