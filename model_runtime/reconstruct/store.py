"""Scratch storage for the tracks of a whole clip, on disk, laid out for the completion pass.

Tracking produces frames (every vertex at one time); filling and smoothing need tracks (one
vertex at every time). The store keeps positions and seen flags *block-major*: the vertices are
cut into blocks, and each block's whole time series is one contiguous run of its file. Tracking
appends a few frames to every block, completion reads and rewrites one block at a time, and the
final pass reads a few frames from every block: plain reads and writes of contiguous runs, in
memory bounded by a block or a run of frames, however long the clip. A store of at most
`MEMORY_BYTES` (a clip of a few hundred frames) keeps the same layout in memory instead.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

MEMORY_BYTES = 64 * 2**20


class TrackStore:
    """Positions (float32 xyz) and seen flags of `vertex_count` tracks over `frame_count` frames,
    in blocks of `block_size` vertices; the scratch files live in `folder` until `close` (no
    files for a store of at most `MEMORY_BYTES`)."""

    def __init__(self, folder: Path, frame_count: int, vertex_count: int, block_size: int):
        self.frame_count = frame_count
        self.blocks = [slice(start, min(start + block_size, vertex_count)) for start in range(0, vertex_count, block_size)]
        in_memory = frame_count * vertex_count * (3 * 4 + 1) <= MEMORY_BYTES
        self._positions = _BlockFile(Path(folder) / "positions.scratch", np.float32, (3,), frame_count, in_memory)
        self._seen = _BlockFile(Path(folder) / "seen.scratch", np.bool_, (), frame_count, in_memory)

    def close(self) -> None:
        self._positions.close()
        self._seen.close()

    def write_frames(self, start: int, positions: np.ndarray, seen: np.ndarray) -> None:
        """Frames `start` onwards: positions (F, V, 3) and seen (F, V)."""
        for block in self.blocks:
            self._positions.write(block, start, positions[:, block])
            self._seen.write(block, start, seen[:, block])

    def read_block(self, block: slice) -> tuple[np.ndarray, np.ndarray]:
        """One block over every frame: positions (T, n, 3) and seen (T, n)."""
        return self._positions.read(block, 0, self.frame_count), self._seen.read(block, 0, self.frame_count)

    def write_block(self, block: slice, positions: np.ndarray) -> None:
        self._positions.write(block, 0, positions)

    def read_frames(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (F, V, 3) and seen flags (F, V) of frames `start` to `stop` (exclusive)."""
        return (
            np.concatenate([self._positions.read(block, start, stop) for block in self.blocks], axis=1),
            np.concatenate([self._seen.read(block, start, stop) for block in self.blocks], axis=1),
        )


class _BlockFile:
    """One block-major array: block after block, each holding (T, block width, *item_shape), in
    the file `path` or in memory."""

    def __init__(self, path: Path, dtype, item_shape: tuple, frame_count: int, in_memory: bool = False):
        self.path = None if in_memory else path
        self.handle = io.BytesIO() if in_memory else open(path, "w+b")
        self.dtype = np.dtype(dtype)
        self.item_shape = item_shape
        self.entry_bytes = self.dtype.itemsize * int(np.prod(item_shape))
        self.frame_count = frame_count

    def write(self, block: slice, frame: int, values: np.ndarray) -> None:
        self.handle.seek(self._offset(block, frame))
        self.handle.write(memoryview(np.ascontiguousarray(values, self.dtype)).cast("B"))

    def read(self, block: slice, start: int, stop: int) -> np.ndarray:
        """A new (writable) array of frames `start` to `stop` of `block`."""
        self.handle.seek(self._offset(block, start))
        values = np.empty((stop - start, block.stop - block.start) + self.item_shape, self.dtype)
        self.handle.readinto(memoryview(values).cast("B"))
        return values

    def close(self) -> None:
        self.handle.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _offset(self, block: slice, frame: int) -> int:
        """Byte offset of `frame` in `block`'s run (the blocks before it hold every frame)."""
        return (self.frame_count * block.start + frame * (block.stop - block.start)) * self.entry_bytes
