"""The tracker's frames: read, decompressed and indexed ahead of it, beside it.

Tracking (sequence.py) is serial: each frame's look-up starts where the previous frames left
every vertex. Reading a frame file and indexing its face pixels (`CanonicalLookup`) is not, and
costs about as much as the look-up, so it runs ahead of the tracker:

* In a reader process, where one starts cheaply (``fork``: Linux, and no other thread in this
  process that a forked child could inherit a held lock from) or the clip is long enough to pay
  for starting a fresh interpreter (`LONG_CLIP_FRAMES`). Each indexed frame comes back through
  one of a few shared-memory slots the tracker owns and reuses: the reader pickles the frame
  (protocol 5) and copies the pickle's array buffers into the slot, and the tracker loads the
  arrays from the slot. A frame too big for its slot comes back through
  the pipe instead, and the slots grow.
* Otherwise in a thread. A thread overlaps little with the tracker: both sides are numpy calls
  on arrays of a few thousand values, each giving up the interpreter lock and then waiting to
  get it back (`make bench` measures the difference).

Whichever reader runs, the tracker sees the same frames in the same order, so the
reconstruction does not depend on it.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Iterator

import numpy as np

from ..capture_folder import CaptureFolder, read_frame
from .tracking import CanonicalLookup

PREFETCH = 2
"""Frames read ahead of the one being tracked."""
FORK_MIN_FRAMES = 16
"""Shortest clip worth a forked reader (starting one takes a few milliseconds)."""
LONG_CLIP_FRAMES = 300
"""Shortest clip worth a reader in a fresh interpreter (about half a second to start)."""
SLOT_BYTES = 4 * 2**20
"""First size of a shared-memory slot (a 360x288 clip's frames need about 1.5 MiB)."""
_ALIGN = 64

Frame = tuple[np.ndarray, "CanonicalLookup | None"]
"""A frame's intrinsics (3, 3) and its look-up (None without a face)."""


def indexed_frame(capture_dir: Path, frame_size: tuple[int, int], index: int) -> Frame:
    maps = read_frame(capture_dir, index, frame_size, optional=False)
    return maps.intrinsics, CanonicalLookup(maps) if maps.has_face else None


def read_indexed(capture: CaptureFolder, reader: str | None = None) -> Iterator[Frame]:
    """The capture's frames in order, indexed. `reader` forces "thread" or a process start
    method ("fork", "forkserver", "spawn"); by default `reader_kind` chooses."""
    kind = reader or reader_kind(capture.frame_count)
    if kind != "thread":
        try:
            slots = _Slots(PREFETCH + 1)
        except OSError:  # no shared memory here (a full or missing /dev/shm)
            kind = "thread"
    if kind == "thread":
        return _read_in_thread(capture)
    return _read_in_process(capture, multiprocessing.get_context(kind), slots)


def reader_kind(frame_count: int) -> str:
    """"fork", "forkserver" or "spawn" where a reader process pays for itself, else "thread"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    methods = multiprocessing.get_all_start_methods()
    if cores < 2:
        return "thread"
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1 and frame_count >= FORK_MIN_FRAMES:
        return "fork"
    if frame_count >= LONG_CLIP_FRAMES:
        return "forkserver" if "forkserver" in methods else "spawn"
    return "thread"


def _read_in_thread(capture: CaptureFolder) -> Iterator[Frame]:
    count = capture.frame_count
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-frames") as pool:
        pending = deque(pool.submit(indexed_frame, capture.path, capture.frame_size, i) for i in range(min(PREFETCH, count)))
        for index in range(count):
            frame = pending.popleft().result()
            if index + PREFETCH < count:
                pending.append(pool.submit(indexed_frame, capture.path, capture.frame_size, index + PREFETCH))
            yield frame


def _read_in_process(capture: CaptureFolder, context, slots: "_Slots") -> Iterator[Frame]:
    count = capture.frame_count
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
    pending = deque()

    def submit(index: int) -> None:
        slot = slots.ready(index % slots.count)
        pending.append((slot, pool.submit(_index_into_slot, capture.path, capture.frame_size, index, index % slots.count, slot.name, slot.size)))

    try:
        for index in range(min(slots.count, count)):
            submit(index)
        for index in range(count):
            slot, future = pending.popleft()
            yield slots.load(slot, *future.result())
            # Resumed: the tracker is done with this frame, so its slot takes the next one.
            if index + slots.count < count:
                submit(index + slots.count)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        slots.release()


class _Slots:
    """The shared-memory slots, one per frame in flight, recycled in turn."""

    def __init__(self, count: int):
        self.count = count
        self.needed = SLOT_BYTES
        self.memory = [SharedMemory(create=True, size=SLOT_BYTES) for _ in range(count)]

    def ready(self, number: int) -> SharedMemory:
        """Slot `number`, replaced by a bigger one when a frame has outgrown it."""
        if self.memory[number].size < self.needed:
            with contextlib.suppress(OSError):
                bigger = SharedMemory(create=True, size=self.needed)
                self._drop(self.memory[number])
                self.memory[number] = bigger
        return self.memory[number]

    def load(self, slot: SharedMemory, payload: bytes, layout: list[tuple[int, int]] | None, needed: int) -> Frame:
        if layout is None:
            self.needed = max(self.needed, needed + needed // 4)
            return pickle.loads(payload)
        # Copies (a fraction of a millisecond): the slot takes another frame while the tracker
        # may still hold this one's arrays.
        return pickle.loads(payload, buffers=[bytearray(slot.buf[start : start + size]) for start, size in layout])

    def release(self) -> None:
        for memory in self.memory:
            self._drop(memory)

    @staticmethod
    def _drop(memory: SharedMemory) -> None:
        memory.close()
        memory.unlink()


_attached: dict[int, SharedMemory] = {}
"""The reader process's view of the slots, by slot number."""


def _index_into_slot(capture_dir: Path, frame_size, index: int, number: int, name: str, size: int):
    """In the reader process: frame `index` indexed and pickled, its arrays copied into slot
    `number`. Returns (pickle, [(offset, size)] of the arrays in the slot, bytes needed), or
    (pickle with the arrays in it, None, bytes needed) when the slot is too small."""
    buffers: list[pickle.PickleBuffer] = []
    frame = indexed_frame(capture_dir, frame_size, index)
    payload = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    layout, offset = [], 0
    for buffer in buffers:
        layout.append((offset, buffer.raw().nbytes))
        offset += -(-buffer.raw().nbytes // _ALIGN) * _ALIGN
    if offset > size:
        return pickle.dumps(frame, protocol=5), None, offset
    memory = _attached.get(number)
    if memory is None or memory.name != name:
        if memory is not None:
            memory.close()
        memory = _attached[number] = SharedMemory(name=name)
    for buffer, (start, nbytes) in zip(buffers, layout):
        memory.buf[start : start + nbytes] = buffer.raw()
    return payload, layout, offset
