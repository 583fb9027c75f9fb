"""PC2 point-cache files, read and written with numpy alone (no bpy).

A PC2 file is a 32-byte header (``<12siiffi``: b"POINTCACHE2\\0", version 1, vertex count, start
frame, sample rate, sample count) then float32 xyz per vertex per sample. Blender's Mesh Cache
modifier reads it; converting a capture between point cache and shape keys reads it back.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

PC2_HEADER = struct.Struct("<12siiffi")  # signature, version, vertices, start frame, sample rate, samples
PC2_SIGNATURE = b"POINTCACHE2\0"


def write_pc2_samples(
    path: Path, vertex_count: int, sample_count: int, chunks: Iterable[np.ndarray], start: float, rate: float
) -> None:
    """Write ``chunks`` of (n, vertex_count, 3) samples, ``sample_count`` in all, as a PC2 file.

    Through a temporary file and a rename, so a reader never sees half a cache; created with a
    plain open, so its permissions follow the umask (a render farm's account can read it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(PC2_HEADER.pack(PC2_SIGNATURE, 1, vertex_count, start, rate, sample_count))
            for chunk in chunks:
                handle.write(np.ascontiguousarray(chunk, np.float32).tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_pc2(path: Path) -> np.ndarray:
    """The samples of a PC2 file as a read-only (samples, vertices, 3) float32 memory map;
    ValueError saying what is wrong when the file is not a complete PC2 cache."""
    path = Path(path)
    with open(path, "rb") as handle:
        header = handle.read(PC2_HEADER.size)
    if len(header) < PC2_HEADER.size or header[:12] != PC2_SIGNATURE:
        raise ValueError(f"{path} is not a PC2 point cache")
    _, _, vertex_count, _, _, sample_count = PC2_HEADER.unpack(header)
    expected = PC2_HEADER.size + sample_count * vertex_count * 12
    if path.stat().st_size != expected:
        raise ValueError(f"{path} holds {path.stat().st_size} bytes; its header promises {expected}")
    return np.memmap(path, np.float32, "r", PC2_HEADER.size, (sample_count, vertex_count, 3))
