"""The capture folder: what a capture writes and what reconstruction reads.

Layout::

    CAPTURE_DIR/
      manifest.json        what was captured and how (see `Manifest`)
      frames/000000.npz    one file per captured frame, numbered by capture index (0-based)

``manifest.json`` fields: ``format`` ("faceanything-capture"), ``format_version``, ``source``
(path, kind, fingerprint, width, height, frame_count, fps, rotation), ``frames`` (first, last,
step and ``numbers``: footage frame numbers as `frame_numbers.py` defines them; count, and per
capture index ``numbers``, ``source_indices`` and ``timestamps`` in seconds),
``backend`` (name, version, ``canonical_space``, and for network backends the weights' sha256),
``intrinsics`` (3x3, pixels), ``focal`` (what the user asked for), ``settings`` (everything that
changes the maps, the backend's code version ``backend_version`` included) and ``runtime_version``.

A frame file is a compressed npz holding ``has_face`` (bool), ``window`` (4 int32, x0 y0 x1 y1)
and, when there is a face, float16 maps of the window: ``depth_offset`` (depth minus the float32
scalar ``depth_reference``, so float16 keeps sub-millimetre precision at any distance),
``canonical`` (h, w, 3), ``depth_confidence``, ``canonical_confidence``, bool ``mask``, plus
``intrinsics`` (3, 3) and, where the backend has them, float32 ``landmarks2d``, ``landmarks3d`` and
``head_pose``. A frame file is written to a temporary name and renamed, so a crash or kill never
leaves a partial frame: a frame either exists whole or not at all, and a re-run only computes
the missing ones (and those a damaged disk or a careless copy broke: `damaged_indices`).

Files are created with the permissions the umask gives (not the owner-only ones of a temporary
file), so another account (a render farm's) can read the shot. A capture writing into the folder
holds a lock on ``capture.lock`` there (`lock_capture_folder`): a second capture into it is
refused at once, naming the first one's process.
"""
from __future__ import annotations

import errno
import contextlib
import io
import json
import os
import socket
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from .contract import FrameMaps
from .errors import CaptureFolderError, UserError
from .frame_numbers import describe_range

FORMAT = "faceanything-capture"
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
LOCK_NAME = "capture.lock"
_OPTIONAL_ARRAYS = ("landmarks2d", "landmarks3d", "head_pose")


def frame_path(capture_dir: Path, index: int) -> Path:
    return Path(capture_dir) / FRAMES_DIR / f"{index:06d}.npz"


def umask_file_mode() -> int:
    """The mode a plain ``open`` would give a new file: 0o666 less the process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temporary_file(target: Path) -> tuple[int, str]:
    """A new temporary file beside `target` (to be renamed onto it), with the umask's permissions
    rather than mkstemp's owner-only ones."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    if os.name != "nt":
        os.fchmod(fd, umask_file_mode())
    return fd, tmp


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    try:
        fd, tmp = temporary_file(path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError as exc:
        raise unwritable(path, exc) from exc


def unwritable(path: Path, exc: OSError) -> CaptureFolderError:
    """The error for a path of the capture folder that cannot be written."""
    return CaptureFolderError(
        f"cannot write {path}: {exc.strerror or exc}",
        "Make the capture folder writable (a read-only mount, permissions, a full disk?) or capture into another folder.",
    )


def frames_record(numbers: list[int], source_indices: list[int], timestamps: list[float]) -> dict:
    """The manifest's ``frames`` entry: per capture index the footage frame number, the source
    index and the time in seconds; ``first``, ``last`` and ``step`` in footage frame numbers."""
    step = numbers[1] - numbers[0] if len(numbers) > 1 else 1
    return {"first": numbers[0], "last": numbers[-1], "step": step, "count": len(numbers),
            "numbers": list(numbers), "source_indices": list(source_indices), "timestamps": list(timestamps)}


def read_manifest(capture_dir: Path) -> dict:
    path = Path(capture_dir) / MANIFEST_NAME
    if not path.is_file():
        raise CaptureFolderError(
            f"{capture_dir} is not a capture folder (no {MANIFEST_NAME})",
            "Run a capture into it first: python -m model_runtime capture INPUT -o FOLDER",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaptureFolderError(f"{path} cannot be read: {exc}", "Delete the folder and capture again.") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) != FORMAT_VERSION:
        raise CaptureFolderError(
            f"{path} is not a capture this runtime can read "
            f"(format {manifest.get('format')!r} version {manifest.get('format_version')!r})",
            "Capture the footage again with this version.",
        )
    return manifest


def write_frame(capture_dir: Path, index: int, maps: FrameMaps) -> None:
    """Store one frame's maps atomically (temporary file, then rename)."""
    arrays: dict[str, np.ndarray] = {
        "has_face": np.array(maps.has_face),
        "window": np.asarray(maps.window, np.int32),
        "intrinsics": np.asarray(maps.intrinsics, np.float64),
    }
    if maps.has_face:
        reference, offset = _depth_offset(maps.depth, maps.mask)
        arrays.update(
            depth_reference=reference,
            depth_offset=offset,
            canonical=maps.canonical.astype(np.float16),
            depth_confidence=maps.depth_confidence.astype(np.float16),
            canonical_confidence=maps.canonical_confidence.astype(np.float16),
            mask=maps.mask,
        )
    for name in _OPTIONAL_ARRAYS:
        value = getattr(maps, name)
        if value is not None:
            arrays[name] = np.asarray(value, np.float32)
    target = frame_path(capture_dir, index)
    try:
        fd, tmp = temporary_file(target)
        with os.fdopen(fd, "wb") as handle:
            _write_npz(handle, arrays)
        os.replace(tmp, target)
    except OSError as exc:
        hint = ("Free some disk space or choose another output folder, then run the capture again to resume."
                if exc.errno == errno.ENOSPC else
                "Make the folder writable or choose another output folder, then run the capture again to resume.")
        raise CaptureFolderError(f"cannot write frame {index} to {target}: {exc.strerror or exc}", hint) from exc


def stored_depth(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The float32 depth map a frame file gives back for ``depth`` (a face frame's)."""
    return _depth_from_offset(*_depth_offset(depth, mask), mask)


def _depth_offset(depth: np.ndarray, mask: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """(reference, float16 offsets): the median face depth and each face pixel's depth minus it."""
    reference = np.float32(np.median(depth[mask]))
    return reference, np.where(mask, depth - reference, 0).astype(np.float16)


def _depth_from_offset(reference, offset: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, offset.astype(np.float32) + reference, 0).astype(np.float32, copy=False)


FRAME_COMPRESSION_LEVEL = 1
"""zlib level of the frame files: level 1 takes a quarter less time than ``np.savez_compressed``'s
default 6 for files 1 % larger (the float16 maps hardly compress further)."""


def _write_npz(handle, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed(handle, **arrays)`` at `FRAME_COMPRESSION_LEVEL`."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED, compresslevel=FRAME_COMPRESSION_LEVEL) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def read_frame(capture_dir: Path, index: int, frame_size: tuple[int, int], optional: bool = True) -> FrameMaps:
    """Load one frame's maps (float32) as written by `write_frame`. `optional=False` leaves
    ``landmarks2d``, ``landmarks3d`` and ``head_pose`` None without reading them (reconstruction
    needs none of them). A damaged or incomplete frame file raises a `CaptureFolderError` naming it."""
    path = frame_path(capture_dir, index)
    try:
        stored = _read_arrays(path, optional)
        return _frame_maps(stored, frame_size)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise CaptureFolderError(
            f"frame {index} of {capture_dir} cannot be read ({path.name}: {exc})",
            "Delete that frame file and run the capture again; only missing frames are recomputed.",
        ) from exc


def _read_arrays(path: Path, optional: bool) -> dict[str, np.ndarray]:
    """The arrays of one frame file: every member, or all but the optional ones. Each member is
    read whole, and its CRC checked by zipfile, before numpy parses it (through `np.load`, a
    damaged array header fails in numpy's header parser, with errors such as tokenize's, before
    the CRC is checked)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            name = member.removesuffix(".npy")
            if optional or name not in _OPTIONAL_ARRAYS:
                arrays[name] = np.lib.format.read_array(io.BytesIO(archive.read(member)))
    return arrays


def _frame_maps(stored: dict[str, np.ndarray], frame_size: tuple[int, int]) -> FrameMaps:
    extras = {name: stored.get(name) for name in _OPTIONAL_ARRAYS}
    if not bool(stored["has_face"]):
        maps = FrameMaps.empty(stored["intrinsics"], frame_size)
        for name, value in extras.items():
            setattr(maps, name, value)
        return maps
    mask = stored["mask"]
    return FrameMaps(
        depth=_depth_from_offset(stored["depth_reference"], stored["depth_offset"], mask),
        canonical=stored["canonical"].astype(np.float32),
        depth_confidence=stored["depth_confidence"].astype(np.float32),
        canonical_confidence=stored["canonical_confidence"].astype(np.float32),
        mask=mask,
        intrinsics=stored["intrinsics"],
        frame_size=tuple(frame_size),
        window=tuple(int(v) for v in stored["window"]),
        **extras,
    )


def _is_whole(path: Path) -> bool:
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        return False
    names = {member.filename for member in members}
    return {"has_face.npy", "window.npy"} <= names and all(m.header_offset + m.compress_size < size for m in members)


@contextlib.contextmanager
def lock_capture_folder(capture_dir: Path) -> Iterator[None]:
    """Hold ``capture.lock`` in `capture_dir` (created with its parents) while a capture writes
    there. The system releases the lock however the process ends; the file stays. A folder that
    another process holds is refused with its process id; one that cannot be written names it."""
    capture_dir = Path(capture_dir)
    path = capture_dir / LOCK_NAME
    try:
        capture_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptureFolderError(f"cannot write the capture folder {capture_dir}: {exc.strerror or exc}",
                                 "Choose a folder you can write to (-o), or fix its permissions.") from exc
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise unwritable(path, exc) from exc
    with handle:
        if not try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CaptureFolderError(
                f"{capture_dir} is being written by another capture ({holder})",
                "Wait for it to finish or stop it, or capture into another folder.",
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield


def try_lock(handle) -> bool:
    """Lock the open file `handle` for this process until it is closed (or the process ends);
    False when another process holds the lock."""
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class CaptureFolder:
    """Read access to a finished (or partly finished) capture."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)

    @property
    def frame_count(self) -> int:
        return int(self.manifest["frames"]["count"])

    @property
    def frame_size(self) -> tuple[int, int]:
        source = self.manifest["source"]
        return int(source["width"]), int(source["height"])

    @property
    def frame_numbers(self) -> list[int]:
        """The footage frame number of each capture index (frame_numbers.py)."""
        return list(self.manifest["frames"]["numbers"])

    def capture_index(self, number: int, what: str = "frame") -> int:
        """The capture index of footage frame `number`; a UserError names the captured range."""
        numbers = self.frame_numbers
        if number not in numbers:
            raise UserError(
                f"{what} {number} is not in the capture {self.path} (its frames are {describe_range(numbers)})",
                "Give a footage frame number of the captured range.",
                code="bad_option",
            )
        return numbers.index(number)

    @property
    def timestamps(self) -> list[float]:
        return list(self.manifest["frames"]["timestamps"])

    @property
    def canonical_space(self) -> str:
        return self.manifest["backend"]["canonical_space"]

    @property
    def fingerprint(self) -> str:
        """Identifies the capture: its source and the settings that made it."""
        return f"{self.manifest['source']['fingerprint']}/{self.manifest['settings_hash']}"

    def finished_indices(self) -> list[int]:
        folder = self.path / FRAMES_DIR
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("[0-9]*.npz"))

    def damaged_indices(self) -> list[int]:
        """Finished frames whose file is not a whole frame file (truncated, cut short by a copy,
        overwritten): its zip directory, read from the file's end, must list the frame's arrays
        within the file. Cheap (no decompression); damage inside an array is found, and named,
        when reconstruction reads it."""
        return [index for index in self.finished_indices() if not _is_whole(frame_path(self.path, index))]

    def is_complete(self) -> bool:
        return len(self.finished_indices()) == self.frame_count

    def remove_partial_files(self) -> None:
        """Delete temporary files a killed writer left behind (never a finished frame). Call it
        only while holding the folder's lock: another capture's files are not leftovers."""
        for leftover in [*(self.path / FRAMES_DIR).glob(".*.tmp"), *self.path.glob(f".{MANIFEST_NAME}.*.tmp")]:
            try:
                leftover.unlink(missing_ok=True)
            except OSError as exc:
                raise unwritable(leftover, exc) from exc

    def frame(self, index: int, optional: bool = True) -> FrameMaps:
        return read_frame(self.path, index, self.frame_size, optional)
