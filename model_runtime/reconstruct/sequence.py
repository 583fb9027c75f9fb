"""Pass 1 of a reconstruction: every frame of the capture, in order, looked up and posed.

Frames stream through: the next ones are read, decompressed and indexed (`CanonicalLookup`) by a
thread while the current one is tracked (reading.py), and results leave memory every
`FLUSH_FRAMES` frames: positions and seen flags for the track store (store.py), confidences and
filled flags, which are final, for the reconstruction's own files. What stays in memory per frame
is small (pose, intrinsics, the few points tracked on their own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..capture_folder import CaptureFolder
from ..errors import Cancelled
from ..reconstruction_format import VertexArrayWriter
from .pose import MIN_POSE_POINTS, fit_head_pose, fit_head_poses
from .reading import Frame
from .store import TrackStore

FLUSH_FRAMES = 64
POSE_POINTS = 400
"""At most this many vertices (spread evenly over the chosen ones) drive the head pose: plenty for
a rigid fit, and the fit's cost stays the same at every mesh density."""


@dataclass
class TrackedClip:
    """The per-frame results of pass 1 that stay in memory."""

    poses: np.ndarray  # (T, 4, 4) head poses (identity where untracked)
    tracked: np.ndarray  # (T,) bool: the frame had a face and a head pose was fitted
    intrinsics: np.ndarray  # (T, 3, 3)
    extra_positions: np.ndarray  # (T, E, 3) raw positions of the points tracked on their own
    extra_seen: np.ndarray  # (T, E)


def track_clip(
    capture: CaptureFolder,
    frames: Iterable[Frame],
    queries: np.ndarray,
    vertex_count: int,
    pose_vertices: np.ndarray | None,
    radius: float,
    store: TrackStore,
    writer: VertexArrayWriter,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrackedClip:
    """Look the canonical `queries` (mesh vertices first, then extra points) up in every one of
    the capture's `frames` (a `reading.FrameReader`).

    Raw vertex positions and seen flags go to `store`, confidences and filled flags (not seen) to
    `writer`; a frame without a face, or with too few seen vertices for a head pose, is all
    unseen. `pose_vertices` (bool, per vertex) chooses the vertices the head pose is fitted to.
    """
    frame_count = capture.frame_count
    extra = len(queries) - vertex_count
    clip = TrackedClip(
        poses=np.tile(np.eye(4), (frame_count, 1, 1)),
        tracked=np.zeros(frame_count, bool),
        intrinsics=np.zeros((frame_count, 3, 3)),
        extra_positions=np.zeros((frame_count, extra, 3)),
        extra_seen=np.zeros((frame_count, extra), bool),
    )
    pose_rows = np.flatnonzero(pose_vertices) if pose_vertices is not None else np.arange(vertex_count)
    pose_rows = pose_rows[np.linspace(0, len(pose_rows) - 1, min(len(pose_rows), POSE_POINTS)).astype(int)]
    rows = _FrameBuffer(store, writer, vertex_count)
    poses = HeadPoses(queries[:vertex_count], pose_rows, clip.poses)
    motion = _PixelMotion(len(queries))
    for index, (intrinsics, lookup) in enumerate(frames):
        if should_cancel and should_cancel():
            raise Cancelled()
        clip.intrinsics[index] = intrinsics
        track = lookup.track(queries, radius, motion.guess()) if lookup is not None else None
        if track is None or not poses.add(index, track.positions[:vertex_count], track.confidence[:vertex_count]):
            motion.forget()
            rows.add(np.zeros((vertex_count, 3)), np.zeros(vertex_count), np.zeros(vertex_count, bool))
        else:
            motion.update(track.pixels, track.seen)
            clip.tracked[index] = True
            rows.add(track.positions[:vertex_count], track.confidence[:vertex_count], track.seen[:vertex_count])
            clip.extra_positions[index] = track.positions[vertex_count:]
            clip.extra_seen[index] = track.seen[vertex_count:]
        if progress:
            progress(index + 1, frame_count)
    rows.flush()
    poses.flush()
    return clip


class HeadPoses:
    """Each tracked frame's head pose, fitted to the vertices `pose_rows` (or to every seen vertex
    when too few of those are seen) into `poses` (T, 4, 4), `FLUSH_FRAMES` frames at a time: one
    fit for all of them costs about what one frame's own would."""

    def __init__(self, canonical: np.ndarray, pose_rows: np.ndarray, poses: np.ndarray):
        self.canonical, self.pose_rows, self.poses = canonical, pose_rows, poses
        self.pose_canonical = canonical[pose_rows]
        self.frames: list[int] = []
        self.positions = np.zeros((FLUSH_FRAMES, len(pose_rows), 3))
        self.weights = np.zeros((FLUSH_FRAMES, len(pose_rows)))

    def add(self, index: int, positions: np.ndarray, weights: np.ndarray) -> bool:
        """Frame `index`'s vertex positions and weights (zero where unseen); False when too few
        vertices are seen for a pose."""
        if (weights[self.pose_rows] > 0).sum() < MIN_POSE_POINTS:
            pose = fit_head_pose(self.canonical, positions, weights)
            if pose is not None:
                self.poses[index] = pose
            return pose is not None
        count = len(self.frames)
        self.positions[count], self.weights[count] = positions[self.pose_rows], weights[self.pose_rows]
        self.frames.append(index)
        if count + 1 == FLUSH_FRAMES:
            self.flush()
        return True

    def flush(self) -> None:
        if self.frames:
            count = len(self.frames)
            self.poses[self.frames] = fit_head_poses(self.pose_canonical, self.positions[:count], self.weights[:count])
            self.frames = []


class _FrameBuffer:
    """Per-frame vertex results, handed on `FLUSH_FRAMES` frames at a time."""

    def __init__(self, store: TrackStore, writer: VertexArrayWriter, vertex_count: int):
        self.store = store
        self.writer = writer
        self.start = 0  # frame index of the first buffered frame
        self.count = 0
        self.positions = np.zeros((FLUSH_FRAMES, vertex_count, 3), np.float32)
        self.confidence = np.zeros((FLUSH_FRAMES, vertex_count), np.float16)
        self.seen = np.zeros((FLUSH_FRAMES, vertex_count), bool)

    def add(self, positions: np.ndarray, confidence: np.ndarray, seen: np.ndarray) -> None:
        self.positions[self.count] = positions
        self.confidence[self.count] = confidence
        self.seen[self.count] = seen
        self.count += 1
        if self.count == FLUSH_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self.count:
            rows = slice(0, self.count)
            self.store.write_frames(self.start, self.positions[rows], self.seen[rows])
            self.writer.write("vertex_confidence.npy", self.start, self.confidence[rows])
            self.writer.write("vertex_filled.npy", self.start, ~self.seen[rows])
        self.start += self.count
        self.count = 0


class _PixelMotion:
    """Where each query should be in the next frame: its last two pixel positions, extrapolated."""

    def __init__(self, count: int):
        self.last = np.full((count, 2), np.nan)
        self.before = np.full((count, 2), np.nan)

    def guess(self) -> np.ndarray:
        velocity = self.last - self.before
        return self.last + np.where(np.isfinite(velocity), velocity, 0.0)

    def update(self, pixels: np.ndarray, seen: np.ndarray) -> None:
        self.before = self.last
        self.last = np.where(seen[:, None], pixels, np.nan)

    def forget(self) -> None:
        self.before = self.last
        self.last = np.full_like(self.before, np.nan)
