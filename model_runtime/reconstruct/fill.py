"""Positions for vertices and points where they were not seen.

A track's position is split into the head pose and a non-rigid *offset*: its position in the
head's frame minus its canonical coordinate (the subject's shape and expression). Where a track
is not seen (occlusion, profile, a frame without a face) its offset is interpolated linearly in
time between the frames that saw it before and after, or held from the nearest one at either end
of the clip, and the (interpolated) head pose carries it. Both ends of every gap meet the tracked
positions exactly, so filling never makes a jump. Tracks never seen in the whole clip (the far
side of a face always seen from one side, a jaw line always at the silhouette) share, frame by
frame, the offset of their nearest tracks that were seen, so they follow the jaw as it moves.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

NEIGHBOURS_FOR_UNSEEN = 4


def head_offsets(positions: np.ndarray, poses: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Offsets (T, n, 3) of camera positions (T, n, 3) under poses (T, 4, 4) from `canonical` (n, 3)."""
    rotations, translations = poses[:, :3, :3], poses[:, :3, 3]
    return (positions - translations[:, None, :]) @ rotations - canonical  # rows: R^T (x - t)


def camera_positions(offsets: np.ndarray, poses: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Inverse of `head_offsets`."""
    rotations, translations = poses[:, :3, :3], poses[:, :3, 3]
    return (canonical + offsets) @ np.swapaxes(rotations, 1, 2) + translations[:, None, :]


def fill_gaps(offsets: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Offsets (T, n, 3) with the unseen entries (`seen` (T, n) False) interpolated in time per
    track; columns never seen stay as they are."""
    frame_count = len(seen)
    frame = np.arange(frame_count)[:, None]
    before = np.maximum.accumulate(np.where(seen, frame, -1), axis=0)
    after = np.minimum.accumulate(np.where(seen, frame, frame_count)[::-1], axis=0)[::-1]
    fillable = ~seen & ((before >= 0) | (after < frame_count))
    if not fillable.any():
        return offsets
    times, columns = np.nonzero(fillable)
    start = before[times, columns]
    end = after[times, columns]
    has_start, has_end = start >= 0, end < frame_count
    weight = np.where(has_start & has_end, (times - start) / np.maximum(end - start, 1), np.where(has_start, 0.0, 1.0))
    start_value = offsets[np.where(has_start, start, end), columns]
    end_value = offsets[np.where(has_end, end, start), columns]
    filled = offsets.copy()
    filled[times, columns] = start_value + weight[:, None] * (end_value - start_value)
    return filled


def donors(targets: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For canonical points `targets` (m, 3): the indices (m, k) of their `NEIGHBOURS_FOR_UNSEEN`
    nearest `candidates` (canonical) and inverse-distance weights (m, k) summing to 1."""
    k = min(NEIGHBOURS_FOR_UNSEEN, len(candidates))
    distance, index = cKDTree(candidates).query(targets, k=k)
    distance, index = distance.reshape(len(targets), k), index.reshape(len(targets), k)
    weights = 1.0 / np.maximum(distance, 1e-9)
    return index, weights / weights.sum(axis=1, keepdims=True)


def positions_from_donors(
    donor_positions: np.ndarray, donor_canonical: np.ndarray, weights: np.ndarray, canonical: np.ndarray, rotations: np.ndarray
) -> np.ndarray:
    """Camera positions (T, m, 3) of points with canonical coordinates `canonical` (m, 3) that
    share the weighted non-rigid offset of their donors (positions (T, m, k, 3), canonical
    (m, k, 3)) under head rotations (T, 3, 3): the translation cancels out."""
    mean_position = np.einsum("mk,tmkc->tmc", weights, donor_positions)
    displacement = canonical - np.einsum("mk,mkc->mc", weights, donor_canonical)
    return mean_position + np.einsum("tij,mj->tmi", rotations, displacement)
