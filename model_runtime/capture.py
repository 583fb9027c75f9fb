"""The capture job: footage in, one capture folder of per-frame maps out.

Frames are streamed from the source through a backend and written one by one (see
capture_folder.py), so memory does not grow with the clip and a crash, kill or cancel keeps
every finished frame. Running the same capture again computes only the missing frames; a
folder that holds a capture of other footage or other settings is refused.
"""
from __future__ import annotations

import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import __version__
from .backends import backend_version, create_backend
from .capture_folder import (
    FORMAT, FORMAT_VERSION, FRAMES_DIR, MANIFEST_NAME, CaptureFolder, frame_path, frames_record, lock_capture_folder,
    unwritable, write_frame, write_json_atomic,
)
from .contract import FrameMaps
from .errors import Cancelled, CaptureFolderError, InputError
from .frame_numbers import describe_range, select_frames
from .frames import Frame, FrameSource, open_source
from .intrinsics import intrinsics_for
from .option_schema import CAPTURE, options_class, parse_focal, parse_frames, settings_key
from .reconstruction_format import reconstruction_dir

ProgressCallback = Callable[[int, int], None]
WarningCallback = Callable[[int, str, str], None]


class CaptureOptions(options_class(CAPTURE, "CaptureOptions")):
    """The capture options of `option_schema.py`, validated when made. All but `overwrite` change
    the maps and go into the settings hash."""


@dataclass
class CaptureSummary:
    capture_dir: str
    frames: int
    computed: int
    frames_with_face: int
    seconds: float
    frames_per_second: float

    def line(self) -> str:
        return (
            f"{self.frames} frames, {self.frames_with_face} with a face, "
            f"{self.computed} computed at {self.frames_per_second:.1f} frames/s -> {self.capture_dir}"
        )


def run_capture(
    input_path: str | Path,
    output_dir: str | Path,
    options: CaptureOptions | None = None,
    progress: ProgressCallback | None = None,
    warn: WarningCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> CaptureSummary:
    """Capture `input_path` into `output_dir`; resumes a capture with the same source and settings."""
    options = options or CaptureOptions()
    output_dir = Path(output_dir)
    with open_source(input_path) as source:
        indices = _selected_indices(source, options.frames)
        intrinsics = _intrinsics(source, options)
        manifest = _manifest(source, options, indices, intrinsics)
        with lock_capture_folder(output_dir):
            _prepare_folder(output_dir, manifest, options.overwrite)
            folder = CaptureFolder(output_dir)
            folder.remove_partial_files()
            _remove_damaged_frames(folder, warn)
            missing = sorted(set(range(len(indices))) - set(folder.finished_indices()))
            started = time.perf_counter()
            computed = _compute_frames(source, folder, options, indices, missing, intrinsics, progress, warn, should_cancel)
            seconds = time.perf_counter() - started
    return CaptureSummary(
        capture_dir=str(output_dir),
        frames=len(indices),
        computed=computed,
        frames_with_face=count_frames_with_face(folder),
        seconds=seconds,
        frames_per_second=computed / seconds if seconds > 0 else 0.0,
    )


def count_frames_with_face(folder: CaptureFolder) -> int:
    return sum(_stored_face(folder, index) for index in folder.finished_indices())


def _remove_damaged_frames(folder: CaptureFolder, warn: WarningCallback | None) -> None:
    """Delete the frame files that cannot be read whole, so they are computed again."""
    numbers = folder.frame_numbers
    for index in folder.damaged_indices():
        path = frame_path(folder.path, index)
        if warn:
            warn(index, "damaged_frame", f"frame {numbers[index]} ({path}) is damaged; computing it again")
        try:
            path.unlink()
        except OSError as exc:
            raise unwritable(path, exc) from exc


def _selected_indices(source: FrameSource, text: str | None) -> list[int]:
    """Source indices of the frames `--frames` names (footage frame numbers, both ends included)."""
    numbers = list(source.info.frame_numbers)
    first, last, step = parse_frames(text) if text else (None, None, 1)
    indices = select_frames(numbers, first, last, step)
    if not indices:
        raise InputError(
            f"frame range {text!r} names no frame of {source.info.path}, whose frames are numbered "
            f"{describe_range(numbers)}",
            f"Give a range within them, for example --frames {numbers[0]}:{numbers[-1]}.",
        )
    return indices


def _intrinsics(source: FrameSource, options: CaptureOptions) -> np.ndarray | None:
    """The user's focal length, or the default field of view; None lets a network backend solve it."""
    info = source.info
    focal = parse_focal(options.focal) if options.focal else {}
    if not focal and options.backend != "mediapipe":
        return None
    return intrinsics_for(info.width, info.height, **focal)


def _settings(options: CaptureOptions, numbers: list[int]) -> dict:
    """The settings that identify the capture, with the frame range as the footage numbers it
    resolved to and the backend's code version (a capture an older backend made is not resumed)."""
    settings = {key: value for key, value in asdict(options).items() if key != "overwrite"}
    settings["backend_version"] = backend_version(options.backend)
    record = frames_record(numbers, [], [])
    settings["frames"] = [record["first"], record["last"], record["step"]]
    return settings


def _manifest(source: FrameSource, options: CaptureOptions, indices: list[int], intrinsics) -> dict:
    info = source.info
    all_times = source.timestamps()
    numbers = [info.frame_numbers[i] for i in indices]
    settings = _settings(options, numbers)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "runtime_version": __version__,
        "source": {
            "path": str(Path(info.path).resolve()),
            "kind": info.kind,
            "fingerprint": info.fingerprint(),
            "width": info.width,
            "height": info.height,
            "frame_count": info.frame_count,
            "fps": info.fps,
            "rotation": info.rotation,
        },
        "frames": frames_record(numbers, indices, [float(all_times[i]) for i in indices]),
        "backend": {"name": options.backend},
        "intrinsics": None if intrinsics is None else np.asarray(intrinsics).tolist(),
        "focal": options.focal,
        "settings": settings,
        "settings_hash": settings_key(settings),
    }


def _prepare_folder(output_dir: Path, manifest: dict, overwrite: bool) -> None:
    """Create the folder, or resume the capture already in it when it is this one. A capture of
    other footage or settings, or of an older format, is refused, or replaced with `overwrite`
    (its reconstruction too: it would belong to the old capture)."""
    if (output_dir / MANIFEST_NAME).is_file():
        difference = _difference(output_dir, manifest)
        if difference is None:
            manifest["backend"] = CaptureFolder(output_dir).manifest["backend"]
            return
        if not overwrite:
            raise CaptureFolderError(f"{output_dir} holds {difference}",
                                     "Choose another output folder, or pass --overwrite to replace it.")
    try:
        shutil.rmtree(output_dir / FRAMES_DIR, ignore_errors=True)
        shutil.rmtree(reconstruction_dir(output_dir), ignore_errors=True)
        (output_dir / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / MANIFEST_NAME, manifest)
    except OSError as exc:
        raise CaptureFolderError(
            f"cannot write the capture folder {output_dir}: {exc.strerror or exc}",
            "Choose a folder you can write to (-o), or fix its permissions.",
        ) from exc
    # A leftover capture of other footage: frames that `rmtree` could not delete must not pass for this one's.
    if CaptureFolder(output_dir).finished_indices():
        raise CaptureFolderError(f"cannot delete the old frames in {output_dir / FRAMES_DIR}",
                                 "Make the folder writable or capture into another folder.")


def _difference(output_dir: Path, manifest: dict) -> str | None:
    """How the capture in `output_dir` differs from the one `manifest` describes; None: it is the same."""
    try:
        old = CaptureFolder(output_dir).manifest
    except CaptureFolderError as exc:
        return f"a capture this runtime cannot resume ({exc.message})"
    if old["source"]["fingerprint"] != manifest["source"]["fingerprint"]:
        return f"a capture of other footage ({old['source']['path']})"
    if old["settings_hash"] != manifest["settings_hash"]:
        changed = sorted(k for k in manifest["settings"] if old["settings"].get(k) != manifest["settings"][k])
        return f"a capture made with other settings ({', '.join(changed) or 'their version'} differ)"
    if old["settings"].get("backend_version") != manifest["settings"]["backend_version"]:
        return f"a capture made by another version of the {manifest['backend']['name']} backend"
    return None


def _compute_frames(source, folder, options, indices, missing, intrinsics, progress, warn, should_cancel) -> int:
    """Run the backend over the missing frames, writing each as it finishes."""
    if not missing:
        return 0
    index_of = {source_index: i for i, source_index in enumerate(indices)}
    backend = create_backend(options.backend, **_backend_options(options, source))
    if getattr(backend, "depends_on_history", False):
        # Frames depend on history: every frame from the resume point on is recomputed,
        # continuing from the frames before it exactly as an uninterrupted run would.
        missing = list(range(_resume(backend, source, folder, indices, missing[0]), len(indices)))
    todo = set(missing)
    _record_backend(folder, backend)
    pending: deque[int] = deque()
    done = 0

    def report(capture_index: int) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(len(indices) - len(todo) + done, len(indices))

    def images() -> Iterator[np.ndarray]:
        for frame in _source_frames(source, indices, todo, index_of):
            if should_cancel and should_cancel():
                raise Cancelled()
            capture_index = index_of[frame.index]
            if frame.image is None:
                # Recorded as a frame without a face, so reconstruction fills across it.
                if warn:
                    warn(capture_index, "unreadable_frame", frame.error)
                write_frame(folder.path, capture_index, _unreadable_frame(source, intrinsics))
                if getattr(backend, "depends_on_history", False):
                    backend.lose_track()  # as a resumed capture would, starting after this frame
                report(capture_index)
                continue
            pending.append(capture_index)
            yield frame.image

    # Writing (zlib) overlaps with the next frame's prediction; one write is in flight at a time,
    # and its failure (a full disk) surfaces before the next frame is handed over.
    with ThreadPoolExecutor(max_workers=1) as writer:
        in_flight = None
        try:
            for maps in backend.predict_frames(images(), intrinsics):
                capture_index = pending.popleft()
                if in_flight is not None:
                    in_flight.result()
                in_flight = writer.submit(write_frame, folder.path, capture_index, maps)
                if not maps.has_face and warn:
                    warn(capture_index, "no_face", f"no face found in frame {indices[capture_index]}")
                report(capture_index)
            if in_flight is not None:
                in_flight.result()
        finally:
            _record_backend(folder, backend)  # again: a network backend fits its alignment while it runs
            backend.close()
    return done


def _resume(backend, source: FrameSource, folder: CaptureFolder, indices: list[int], first_missing: int) -> int:
    """Hand a backend whose frames depend on history what it needs to continue after the stored
    frames; returns the first frame to compute. A backend of windows (`resume_window`) restarts
    at the window that emits ``first_missing``: the frames of that window that earlier windows
    emitted are handed over (decoded again, with their stored maps) and are not computed again."""
    first = first_missing
    if hasattr(backend, "resume_window"):
        feed_from, first = backend.resume_window(first_missing)
        fed_again = range(feed_from, first)
        backend.continue_windows(feed_from, list(zip(_decoded(source, indices, fed_again),
                                                     (folder.frame(i) for i in fed_again))))
    _resume_tracking(backend, source, folder, indices, first)
    return first


def _decoded(source: FrameSource, indices: list[int], capture_indices: range) -> list[np.ndarray | None]:
    """The images of a run of captured frames, decoded again (None where unreadable)."""
    if not capture_indices:
        return []
    frames = source.frames(indices[capture_indices[0]], indices[capture_indices[-1]] + 1, _source_step(indices))
    return [frame.image for frame in frames]


def _resume_tracking(backend, source: FrameSource, folder: CaptureFolder, indices: list[int], first: int) -> None:
    """Hand a backend whose frames depend on history the frame before ``first`` and the first
    frame with a face (the MediaPipe appearance stage's reference), each as (the frame re-decoded,
    its stored maps), or None where it has no face."""
    reference = next((i for i in range(first) if _stored_face(folder, i)), None)
    if reference is None:
        return

    def view(capture_index: int) -> tuple[np.ndarray, FrameMaps] | None:
        maps = folder.frame(capture_index)
        if not maps.has_face:
            return None
        frame = next(iter(source.frames(indices[capture_index], indices[capture_index] + 1)))
        return None if frame.image is None else (frame.image, maps)

    backend.resume_tracking(view(first - 1), view(reference))


def _stored_face(folder: CaptureFolder, capture_index: int) -> bool:
    """Whether the stored frame has a face (its maps are not read)."""
    with np.load(frame_path(folder.path, capture_index)) as data:
        return bool(data["has_face"])


def _source_step(indices: list[int]) -> int:
    """The step between the captured frames' source indices."""
    return indices[1] - indices[0] if len(indices) > 1 else 1


def _unreadable_frame(source: FrameSource, intrinsics: np.ndarray | None) -> FrameMaps:
    info = source.info
    if intrinsics is None:
        intrinsics = intrinsics_for(info.width, info.height)
    return FrameMaps.empty(intrinsics, (info.width, info.height))


def _source_frames(source, indices, todo, index_of) -> Iterable[Frame]:
    """The source frames whose capture index is still to compute, in order."""
    step = _source_step(indices)
    first_missing = indices[min(todo)]
    for frame in source.frames(first_missing, indices[-1] + 1, step):
        if index_of.get(frame.index) in todo:
            yield frame


def _backend_options(options: CaptureOptions, source: FrameSource) -> dict:
    # A folder of frames is a sequence (VFX plates come as image sequences); still-image
    # mode only for a single image, or when asked.
    still = options.still_images or source.info.kind == "image"
    appearance = options.appearance and not still
    if options.backend == "mediapipe":
        return {"static_images": still, "appearance": appearance, **options.backend_options}
    return {"checkpoint": options.checkpoint, "device": options.device, "appearance": appearance,
            **options.backend_options}


def _record_backend(folder: CaptureFolder, backend) -> None:
    manifest = folder.manifest
    manifest["backend"] = {
        "name": backend.name,
        "version": backend.version,
        "canonical_space": backend.canonical_space,
        **(backend.describe() if hasattr(backend, "describe") else {}),
    }
    write_json_atomic(folder.path / MANIFEST_NAME, manifest)
