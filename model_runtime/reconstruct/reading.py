"""The tracker's frames: read, decompressed and indexed ahead of it, beside it.

Tracking (sequence.py) is serial: each frame's look-up starts where the previous frames left
every vertex. Reading a frame file and indexing its face pixels (`CanonicalLookup`) is not, and
costs about as much as the look-up, so it runs ahead of the tracker:

* In a reader process where one starts in milliseconds: forked (Linux, and no other thread in
  this process that could hold a lock the child needs), or from a fork server started earlier
  (`start_forkserver`; the runtime server does), or, for clips long enough to pay for a fresh
  interpreter (`LONG_CLIP_FRAMES`), spawned. Each indexed frame comes back through one of a few
  shared-memory slots the tracker owns and reuses: the reader pickles the frame (protocol 5)
  and copies the pickle's array buffers into the slot, and the tracker loads the arrays from
  the slot. A frame too big for its slot comes back through the pipe instead, and the slots
  grow. A reader that never delivers a frame gives way to a thread.
* Otherwise in a thread. A thread overlaps little with the tracker: both sides are numpy calls
  on arrays of a few thousand values, each giving up the interpreter lock and then waiting to
  get it back (`make bench` measures the difference).

Whichever reader runs, the tracker sees the same frames in the same order, so the
reconstruction does not depend on it.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import forkserver
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Iterator

import numpy as np

from ..capture_folder import CaptureFolder, read_frame
from ..errors import UserError
from .tracking import CanonicalLookup

PREFETCH = 2
"""Frames read ahead of the one being tracked."""
FORK_MIN_FRAMES = 16
"""Shortest clip worth a forked reader (starting one takes a few milliseconds)."""
LONG_CLIP_FRAMES = 300
"""Shortest clip worth a reader in a fresh interpreter (about half a second to start)."""
SPARE_SECONDS = 3e-4
"""A reader that waited this long for its next frame is ahead of the tracker, and takes on the
frame's tree (otherwise the tracker builds it): the two sides stay about even whichever is faster
on the footage at hand."""
SLOT_BYTES = 4 * 2**20
"""First size of a shared-memory slot (a 360x288 clip's frames need about 1.5 MiB)."""
_ALIGN = 64

log = logging.getLogger("model_runtime.reconstruct")

Frame = tuple[np.ndarray, "CanonicalLookup | None"]
"""A frame's intrinsics (3, 3) and its look-up (None without a face)."""


def indexed_frame(capture_dir: Path, frame_size: tuple[int, int], index: int) -> Frame:
    maps = read_frame(capture_dir, index, frame_size, optional=False)
    return maps.intrinsics, CanonicalLookup(maps) if maps.has_face else None


class FrameReader:
    """The capture's frames in order, indexed, read ahead from the moment the reader is made
    (so that starting it overlaps whatever the caller does before it tracks). Iterate once;
    `close` (or leaving the ``with`` block) stops it. `reader` forces "thread" or a process
    start method ("fork", "forkserver", "spawn"); by default `reader_kind` chooses."""

    def __init__(self, capture: CaptureFolder, reader: str | None = None):
        self.capture = capture
        self.kind = reader or reader_kind(capture.frame_count)
        self.slots = self.process = self.pool = None
        if self.kind != "thread":
            try:
                self.slots = _Slots(PREFETCH + 1)
            except OSError:  # no shared memory here (a full or missing /dev/shm)
                self.kind = "thread"
        if self.slots is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-frames")
        else:
            self.process = _ReaderProcess(multiprocessing.get_context(self.kind), capture)
        self.pending: deque = deque()  # (index, the slot or the future it will arrive in)
        self.submitted = 0
        try:
            for _ in range(min(PREFETCH + 1, capture.frame_count)):
                self._submit()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while self.pending:
            index, arriving = self.pending.popleft()
            if self.pool is not None:
                yield arriving.result()
            else:
                try:
                    reply = self.process.receive(index)
                except UserError as exc:
                    if index > 0 or exc.code != "reader_stopped":
                        raise
                    self._read_in_thread_instead()
                    continue
                if not self.pending:
                    self.process.finish()  # that was the last frame: it can exit while the tracker works on
                yield self.slots.load(arriving, *reply)  # not kept here: its arrays are views of the slot
            # Resumed: the tracker is done with that frame, so its slot takes the next one.
            if self.submitted < self.capture.frame_count:
                self._submit()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.process is not None:
            self.process.stop(outstanding=len(self.pending))
            self.pending.clear()
        if self.slots is not None:
            self.slots.release()

    def _read_in_thread_instead(self) -> None:
        """The reader process never delivered a frame (a script without a ``__main__`` guard under
        "spawn", no memory, a sandbox that forbids it): read in a thread instead."""
        log.warning("the frame reader process did not start (its error, if any, is above); reading frames in a thread")
        self.close()
        self.process = self.slots = None
        self.kind = "thread"
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-frames")
        self.submitted = 0
        for _ in range(min(PREFETCH + 1, self.capture.frame_count)):
            self._submit()

    def _submit(self) -> None:
        index = self.submitted
        self.submitted += 1
        if self.pool is not None:
            self.pending.append((index, self.pool.submit(indexed_frame, self.capture.path, self.capture.frame_size, index)))
            return
        number = index % self.slots.count
        slot = self.slots.ready(number)
        self.process.send((index, number, slot.name, slot.size))
        self.pending.append((index, slot))


class _ReaderProcess:
    """The process that reads and indexes frames into the tracker's slots, in the order asked,
    over one pipe (a process pool's extra thread would contend for the tracker's interpreter
    lock on every frame)."""

    def __init__(self, context, capture: CaptureFolder):
        self.capture = capture
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, capture.path, capture.frame_size), name="faceanything-frame-reader", daemon=True
        )
        self.process.start()
        child.close()
        self.finished = False

    def send(self, task: tuple) -> None:
        try:
            self.connection.send(task)
        except OSError:
            pass  # it stopped: `receive` says so

    def receive(self, index: int):
        try:
            failed, value = self.connection.recv()
        except (EOFError, OSError) as exc:
            raise UserError(
                f"the process that reads {self.capture.path} ahead of the tracker stopped before frame {index} was ready",
                "The runtime log (stderr) may say why; most often it ran out of memory: close other programs and run the reconstruction again.",
                code="reader_stopped",
            ) from exc
        if failed:
            raise value
        return value

    def finish(self) -> None:
        """No more frames: let it exit."""
        if not self.finished:
            self.finished = True
            self.send(None)

    def stop(self, outstanding: int) -> None:
        """Let it finish the `outstanding` frames (a few milliseconds each), then end it."""
        self.finish()
        with contextlib.suppress(EOFError, OSError):
            for _ in range(outstanding):
                self.connection.recv()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.connection.close()


def _serve(connection, capture_dir: Path, frame_size: tuple[int, int]) -> None:
    """The reader process: (index, slot number, slot name, slot size) in, `_index_into_slot`'s
    answer or the error out, until None."""
    keep_freed_memory()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the tracker too, which reports it
        while True:
            waited = time.perf_counter()
            if (task := connection.recv()) is None:
                break
            ahead = time.perf_counter() - waited > SPARE_SECONDS  # the tracker is the slower side
            try:
                reply = (False, _index_into_slot(capture_dir, frame_size, *task, with_tree=ahead))
            except Exception as exc:  # noqa: BLE001 - raised again in the tracker
                reply = (True, _transferable(exc))
            connection.send(reply)


def _transferable(error: Exception) -> Exception:
    """`error`, or a plain RuntimeError saying the same where `error` does not pickle."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(error).__name__}: {error}")


def reader_kind(frame_count: int) -> str:
    """"fork", "forkserver" or "spawn" where a reader process pays for itself, else "thread"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    methods = multiprocessing.get_all_start_methods()
    if cores < 2:
        return "thread"
    if frame_count >= FORK_MIN_FRAMES:
        if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1:
            return "fork"
        if _forkserver_started:
            return "forkserver"
    if frame_count >= LONG_CLIP_FRAMES:
        return "forkserver" if "forkserver" in methods else "spawn"
    return "thread"


def start_forkserver() -> None:
    """Start, in the background, the server that reader processes are forked from, with this
    module loaded (where there is one: Linux and macOS). A long-running program with threads
    (the runtime server) calls it once; its readers then start in milliseconds, like forked
    ones, where they would otherwise start a fresh interpreter."""
    global _forkserver_started
    if "forkserver" in multiprocessing.get_all_start_methods() and not _forkserver_started:
        multiprocessing.set_forkserver_preload([__name__])
        forkserver.ensure_running()
        _forkserver_started = True


_forkserver_started = False


class _Slots:
    """The shared-memory slots, one per frame in flight, recycled in turn."""

    def __init__(self, count: int):
        _close_lingering()
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
        # The arrays are views of the slot, which takes the next frame only once the tracker has
        # asked for the frame after this one (copying them would cost the tracker a tenth).
        return pickle.loads(payload, buffers=[slot.buf[start : start + size] for start, size in layout])

    def release(self) -> None:
        for memory in self.memory:
            self._drop(memory)
        _close_lingering()

    @staticmethod
    def _drop(memory: SharedMemory) -> None:
        memory.unlink()
        try:
            memory.close()
        except BufferError:  # the tracker still holds arrays on it: close it later
            _lingering.append(memory)


def _close_lingering() -> None:
    for memory in list(_lingering):
        with contextlib.suppress(BufferError):
            memory.close()
            _lingering.remove(memory)


def keep_freed_memory() -> None:
    """Have glibc keep freed memory (up to 64 MiB) for reuse in this process: the reader and the
    tracker allocate the same arrays again every frame. By default glibc hands blocks over
    128 KiB, and free memory at the top of its heap, straight back to the system, and every
    frame's arrays were faulted in afresh: a fifth of the reader's time and a few percent of the
    tracker's on the first clip a process reconstructs. Elsewhere (no glibc) nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 16 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_lingering: list[SharedMemory] = []
"""Slots unlinked but not yet closed, because arrays on them were still alive."""
_attached: dict[int, SharedMemory] = {}
"""The reader process's view of the slots, by slot number."""


def _index_into_slot(capture_dir: Path, frame_size, index: int, number: int, name: str, size: int, with_tree: bool = False):
    """In the reader process: frame `index` indexed (`with_tree`: its tree built too) and
    pickled, its arrays copied into slot `number`. Returns (pickle, [(offset, size)] of the
    arrays in the slot, bytes needed), or (pickle with the arrays in it, None, bytes needed) when
    the slot is too small."""
    buffers: list[pickle.PickleBuffer] = []
    frame = indexed_frame(capture_dir, frame_size, index)
    if with_tree and frame[1] is not None:
        frame[1].build_tree()
    payload = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    layout, offset = [], 0
    for buffer in buffers:
        nbytes = buffer.raw().nbytes
        layout.append((offset, nbytes))
        offset += -(-nbytes // _ALIGN) * _ALIGN
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
