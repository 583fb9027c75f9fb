"""The tracker's frames, read and indexed by one thread a couple of frames ahead of it.

Tracking (sequence.py) is serial: each frame's look-up starts where the previous frames left
every vertex. Reading a frame file and indexing its face pixels (`CanonicalLookup`) is not, so a
thread does it for the next `READ_AHEAD` frames while the tracker works on the current one, and
before that while the mesh and points are made. The thread overlaps only the work that gives up
the interpreter lock (inflating the file, the larger numpy steps), and reading inline measured
within noise of it; nothing more elaborate earns its place, because reconstruction is never the
slow step: it runs at over twice capture's frames/s on the same clip (`make bench`). The tracker
sees the same frames in the same order as it would reading them itself.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from ..capture_folder import CaptureFolder
from .tracking import CanonicalLookup

READ_AHEAD = 2
"""Frames read ahead of the one being tracked."""

Frame = tuple[np.ndarray, "CanonicalLookup | None"]
"""A frame's intrinsics (3, 3) and its look-up (None without a face)."""


def indexed_frame(capture: CaptureFolder, index: int) -> Frame:
    """Frame `index` of `capture`, read and indexed."""
    maps = capture.frame(index, optional=False)
    return maps.intrinsics, CanonicalLookup(maps) if maps.has_face else None


class FrameReader:
    """The capture's frames in order, indexed, read ahead from the moment the reader is made.
    Iterate once; `close` (or leaving the ``with`` block) stops the thread and waits for it. An
    error reading a frame is raised where the tracker asks for that frame."""

    def __init__(self, capture: CaptureFolder):
        self.capture = capture
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-frames")
        self.pending: deque[Future] = deque()
        self.submitted = 0
        for _ in range(min(READ_AHEAD, capture.frame_count)):
            self._submit()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while self.pending:
            frame = self.pending.popleft().result()
            if self.submitted < self.capture.frame_count:
                self._submit()
            yield frame

    def close(self) -> None:
        """Drop the frames not yet read and wait for the one being read (a few milliseconds)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()

    def _submit(self) -> None:
        self.pending.append(self.pool.submit(indexed_frame, self.capture, self.submitted))
        self.submitted += 1
