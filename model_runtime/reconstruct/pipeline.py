"""`reconstruct`: a capture folder in, the reconstruction folder (reconstruction_format.py) out.

Three passes, none holding the clip in memory (each works on a part bounded by `BLOCK_BYTES`):

1. Tracking (sequence.py), streamed frame by frame: every vertex and extra point is looked up
   in canonical space (tracking.py) and the head pose fitted (pose.py); raw positions go to a
   scratch track store (store.py) a few dozen frames at a time.
2. Completion, a block of vertices over the whole clip at a time: unseen entries are filled
   (fill.py) and the tracks smoothed (smoothing.py).
3. Output, a run of frames at a time: vertices no frame saw follow their neighbours, and
   ``vertices.npy`` is written front to back.

Everything is written to a temporary folder beside the old reconstruction and swapped in at the
end, so a cancelled or failed run leaves the previous reconstruction untouched. A killed run
cannot remove its temporary folder; the next run on the capture does (`_work_folder`).
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import __version__
from ..capture_folder import CaptureFolder, try_lock, unwritable
from ..contract import CANONICAL_SPACE_ID
from ..errors import Cancelled, CaptureFolderError, UserError
from ..expressions.curves import solve_capture
from ..frame_numbers import select_frames
from ..option_schema import parse_frames
from ..reconstruction_format import (
    FRAME_FILLED,
    FRAME_HELD,
    FRAME_TRACKED,
    VertexArrayWriter,
    reconstruction_dir,
    write_reconstruction_files,
)
from .fill import camera_positions, donors, fill_gaps, head_offsets, positions_from_donors
from .mesh import Mesh, dense_mesh, rigid_vertices, template_mesh
from .options import ReconstructOptions
from .points import PointSet, resolve_points
from .pose import interpolate_poses
from .reading import FrameReader
from .sequence import TrackedClip, track_clip
from .store import TrackStore
from .smoothing import smooth_poses, smooth_series, window_frames

BLOCK_BYTES = 64 * 2**20
"""Working memory of the completion pass; a block of vertices over the whole clip fits in it."""
BYTES_PER_ENTRY = 8 * 24
"""Working bytes per (frame, vertex) in passes 2 and 3 (float64 xyz, about eight arrays)."""
DEFAULT_FPS = 25.0

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


def reconstruct(
    capture_dir: str | Path,
    options: ReconstructOptions | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    template=None,
) -> Path:
    """Reconstruct the capture in `capture_dir`; returns the reconstruction folder.

    `template` overrides the canonical template (a `model_runtime.template.FaceTemplate` or an
    object with its attributes, in the capture's canonical space); by default the shipped
    template is loaded when the capture's canonical space is `CANONICAL_SPACE_ID`.
    `progress(done, total)` is called per frame; `should_cancel()` is polled per frame and per
    block, and a True answer raises `Cancelled` (the previous reconstruction stays). In the
    template's canonical space the ARKit-52 expression curves are solved too (expressions/).
    """
    options = options or ReconstructOptions()
    capture = CaptureFolder(Path(capture_dir))
    _check_complete(capture)
    template = _template_for(capture, options, template)
    with FrameReader(capture) as frames:  # reads ahead while the mesh and points are made
        reference_frame = None
        if options.mesh == "template":
            mesh = template_mesh(template, options.density)
        else:
            reference_frame = _reference_frame(capture, options)
            mesh = dense_mesh(capture.frame(reference_frame), options.density, reference_frame)
        points = resolve_points(options.points, template, options.mesh == "template", capture)
        settings = options.settings() | {"reference_frame": reference_frame, "smoothing_window": window_frames(_fps(capture))}
        target = reconstruction_dir(capture.path)
        with _work_folder(target) as partial:
            _reconstruct_into(partial, capture, frames, options, mesh, rigid_vertices(mesh, template), points, settings, progress, should_cancel)
            _replace(target, partial)
    if capture.canonical_space == CANONICAL_SPACE_ID:
        neutral = None if options.neutral_frame is None else capture.capture_index(options.neutral_frame, "neutral frame")
        solve_capture(capture.path, neutral_frame=neutral, rest_frames=_rest_frames(capture, options.rest_frames))
    return target


def _rest_frames(capture: CaptureFolder, text: str | None) -> tuple[int, ...] | None:
    """The capture indices of the footage frames FIRST:LAST of the rest_frames option."""
    if text is None:
        return None
    first, last, _ = parse_frames(text, "rest_frames")
    return tuple(select_frames(capture.frame_numbers, first, last, 1))


def _reconstruct_into(folder, capture, frames, options, mesh, rigid, points, settings, progress, should_cancel) -> None:
    frame_count, vertex_count = capture.frame_count, mesh.vertex_count
    writer = VertexArrayWriter(folder, frame_count, vertex_count)
    store = TrackStore(folder, frame_count, vertex_count, block_size=max(1, BLOCK_BYTES // (frame_count * BYTES_PER_ENTRY)))
    try:
        queries = np.concatenate([mesh.canonical, points.canonical[points.extra]])
        clip = track_clip(capture, frames, queries, vertex_count, rigid, options.radius, store, writer, progress, should_cancel)
        if not clip.tracked.any():
            raise UserError(
                f"no face was tracked in any of the {frame_count} frames of {capture.path}",
                "Check the capture (its frames have no face, or no face pixel matches the mesh's canonical coordinates).",
                code="no_face",
            )
        fps = _fps(capture)
        poses = interpolate_poses(clip.poses, clip.tracked)
        head_pose = smooth_poses(poses, fps, options.filter)
        ever_seen = _complete_tracks(store, poses, mesh.canonical, fps, options.filter, should_cancel)
        extra = _ExtraPoints(clip, points, mesh.canonical, ever_seen)
        watched = np.concatenate([points.vertex[points.vertex >= 0], extra.donor_columns.ravel()])
        watched_positions, watched_seen = _write_vertices(store, writer, mesh.canonical, ever_seen, head_pose[:, :3, :3], watched, should_cancel)
    finally:
        store.close()
        writer.close()
    on_mesh_count = int((points.vertex >= 0).sum())
    extra_positions = extra.complete(poses, head_pose, watched_positions[:, on_mesh_count:], fps, options.filter)
    write_reconstruction_files(
        folder,
        header=_header(capture, options, mesh, settings, fps),
        mesh={"canonical_vertices": mesh.canonical.astype(np.float32), "triangles": mesh.triangles, "uv": mesh.uv},
        frames={
            "head_pose": head_pose,
            "intrinsics": clip.intrinsics,
            "frame_state": _frame_states(clip.tracked),
            "timestamps": np.asarray(capture.timestamps, np.float64),
            "source_indices": np.asarray(capture.manifest["frames"]["source_indices"], np.int64),
            "frame_numbers": np.asarray(capture.frame_numbers, np.int64),
        },
        points=_point_arrays(points, watched_positions[:, :on_mesh_count], watched_seen[:, :on_mesh_count], extra_positions, clip),
    )


def _complete_tracks(store: TrackStore, poses, canonical, fps, filter_name, should_cancel) -> np.ndarray:
    """Pass 2: fill and smooth the vertex tracks, a block of vertices at a time. Returns which
    vertices were seen at least once (the others are placed in pass 3)."""
    ever_seen = np.zeros(len(canonical), bool)
    for block in store.blocks:
        if should_cancel and should_cancel():
            raise Cancelled()
        positions, seen = store.read_block(block)
        ever_seen[block] = seen.any(axis=0)
        filled = _fill(positions, seen, poses, canonical[block])
        store.write_block(block, smooth_series(filled, fps, filter_name))
    return ever_seen


def _write_vertices(store, writer, canonical, ever_seen, rotations, watched, should_cancel):
    """Pass 3: `vertices.npy`, a run of frames at a time; vertices no frame saw follow their
    nearest seen vertices. Returns the positions (T, W, 3) and seen flags (T, W) of the
    `watched` vertex columns."""
    never = np.flatnonzero(~ever_seen)
    seen = np.flatnonzero(ever_seen)
    if never.size:
        index, weights = donors(canonical[never], canonical[seen])
        donor_columns = seen[index]
    frame_count = store.frame_count
    watched_positions = np.zeros((frame_count, len(watched), 3))
    watched_seen = np.zeros((frame_count, len(watched)), bool)
    run = max(1, BLOCK_BYTES // (len(canonical) * BYTES_PER_ENTRY))
    for start in range(0, frame_count, run):
        if should_cancel and should_cancel():
            raise Cancelled()
        stop = min(start + run, frame_count)
        positions, seen_flags = store.read_frames(start, stop)
        if never.size:
            donor_positions = positions[:, donor_columns].astype(np.float64)
            positions[:, never] = positions_from_donors(donor_positions, canonical[donor_columns], weights, canonical[never], rotations[start:stop])
        writer.write("vertices.npy", start, positions)
        watched_positions[start:stop] = positions[:, watched]
        watched_seen[start:stop] = seen_flags[:, watched]
    return watched_positions, watched_seen


class _ExtraPoints:
    """The points tracked on their own (few: all frames at once). Points never seen follow their
    nearest seen vertices, whose positions pass 3 collects (`donor_columns`)."""

    def __init__(self, clip: TrackedClip, points: PointSet, mesh_canonical: np.ndarray, ever_seen: np.ndarray):
        self.clip = clip
        self.canonical = points.canonical[points.extra]
        self.never = np.flatnonzero(~clip.extra_seen.any(axis=0))
        self.donor_columns = np.zeros((0, 1), np.int64)
        if self.never.size:
            candidates = np.flatnonzero(ever_seen)
            index, self.weights = donors(self.canonical[self.never], mesh_canonical[candidates])
            self.donor_columns = candidates[index]
            self.donor_canonical = mesh_canonical[self.donor_columns]

    def complete(self, poses, head_pose, donor_positions, fps, filter_name) -> np.ndarray:
        """Filled and smoothed positions (T, E, 3); `donor_positions` (T, E_never * k, 3)."""
        if len(self.canonical) == 0:
            return self.clip.extra_positions
        positions = smooth_series(_fill(self.clip.extra_positions.copy(), self.clip.extra_seen, poses, self.canonical), fps, filter_name)
        if self.never.size:
            donor_positions = donor_positions.reshape(len(poses), *self.donor_columns.shape, 3)
            positions[:, self.never] = positions_from_donors(
                donor_positions, self.donor_canonical, self.weights, self.canonical[self.never], head_pose[:, :3, :3]
            )
        return positions


def _fill(positions, seen, poses, canonical):
    """Camera positions (T, n, 3) with their unseen entries filled (columns never seen come back
    meaningless); only the columns with gaps are touched."""
    gappy = np.flatnonzero(~seen.all(axis=0))
    if gappy.size:
        offsets = fill_gaps(head_offsets(positions[:, gappy].astype(np.float64), poses, canonical[gappy]), seen[:, gappy])
        positions[:, gappy] = camera_positions(offsets, poses, canonical[gappy])
    return positions


def _point_arrays(points: PointSet, on_mesh_positions, on_mesh_seen, extra_positions, clip: TrackedClip) -> dict:
    frame_count = len(clip.poses)
    on_mesh = np.flatnonzero(points.vertex >= 0)
    positions = np.zeros((frame_count, len(points.names), 3))
    visible = np.zeros((frame_count, len(points.names)), bool)
    positions[:, on_mesh] = on_mesh_positions
    visible[:, on_mesh] = on_mesh_seen
    positions[:, points.extra] = extra_positions
    visible[:, points.extra] = clip.extra_seen
    return {
        "names": np.asarray(points.names, dtype=str),
        "canonical": points.canonical.astype(np.float32),
        "positions": positions.astype(np.float32),
        "pixels": project(positions, clip.intrinsics).astype(np.float32),
        "visible": visible,
    }


def project(positions: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pixel positions (T, P, 2) of camera points (T, P, 3) under per-frame intrinsics (T, 3, 3)."""
    homogeneous = np.einsum("tij,tpj->tpi", intrinsics, positions)
    depth = homogeneous[..., 2:]
    return homogeneous[..., :2] / np.where(np.abs(depth) > 1e-12, depth, 1e-12)


def _frame_states(tracked: np.ndarray) -> np.ndarray:
    frames = np.flatnonzero(tracked)
    states = np.full(len(tracked), FRAME_FILLED, np.uint8)
    states[tracked] = FRAME_TRACKED
    states[: frames[0]] = FRAME_HELD
    states[frames[-1] + 1 :] = FRAME_HELD
    return states


def _header(capture: CaptureFolder, options, mesh: Mesh, settings: dict, fps: float) -> dict:
    return {
        "capture_fingerprint": capture.fingerprint,
        "canonical_space": capture.canonical_space,
        "mesh_mode": options.mesh,
        "settings": settings,
        "frame_count": capture.frame_count,
        "vertex_count": mesh.vertex_count,
        "frame_size": list(capture.frame_size),
        "fps": fps,
        "runtime_version": __version__,
    }


def _fps(capture: CaptureFolder) -> float:
    """Frames per second of the reconstruction: the source's rate over the capture's frame step."""
    fps = capture.manifest["source"].get("fps") or DEFAULT_FPS
    return float(fps) / int(capture.manifest["frames"].get("step") or 1)


def _check_complete(capture: CaptureFolder) -> None:
    finished = len(capture.finished_indices())
    if finished != capture.frame_count:
        raise CaptureFolderError(
            f"the capture in {capture.path} is not finished ({finished} of {capture.frame_count} frames)",
            "Run the same capture command again; it computes only the missing frames.",
        )
    if not capture.manifest.get("backend", {}).get("canonical_space"):
        raise CaptureFolderError(
            f"{capture.path} does not say which canonical space its maps are in (manifest backend.canonical_space)",
            "Capture the footage again with this version.",
        )


def _template_for(capture: CaptureFolder, options: ReconstructOptions, template):
    if template is None and capture.canonical_space == CANONICAL_SPACE_ID:
        from ..template import load_template

        template = load_template()
    if template is not None and template.space_id != capture.canonical_space:
        raise UserError(
            f"the template is in canonical space {template.space_id!r} but {capture.path} is in {capture.canonical_space!r}",
            "Use --mesh dense, which needs no template.",
            code="bad_option",
        )
    if options.mesh == "template" and template is None:
        raise UserError(
            f"{capture.path} was captured in canonical space {capture.canonical_space!r}, which has no template mesh",
            "Use --mesh dense: it seeds a mesh on a frame of the capture instead.",
            code="bad_option",
        )
    return template


def _reference_frame(capture: CaptureFolder, options: ReconstructOptions) -> int:
    if options.reference_frame is not None:
        return capture.capture_index(options.reference_frame, "reference frame")
    for index in range(capture.frame_count):
        if capture.frame(index).has_face:
            return index
    raise UserError(f"no frame of {capture.path} has a face", "Capture footage with a face in it.", code="no_face")


@contextlib.contextmanager
def _work_folder(target: Path) -> Iterator[Path]:
    """A new temporary folder beside `target`, removed afterwards. The run holds a lock on a file
    beside it (``.partial-*.lock``) while it lives, which the system releases however the run
    ends; folders that killed runs left behind are removed first, those of runs still working
    on the same capture are not."""
    try:
        _remove_abandoned(target)
        fd, lock_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-", suffix=".lock")
    except OSError as exc:
        raise unwritable(target.parent, exc) from exc
    folder = Path(lock_name.removesuffix(".lock"))
    try:
        with open(fd, "a+b") as lock:
            try_lock(lock)  # a new file: nobody else holds it
            try:
                folder.mkdir()
            except OSError as exc:
                raise unwritable(folder, exc) from exc
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        Path(lock_name).unlink(missing_ok=True)


def _remove_abandoned(target: Path) -> None:
    """Remove the temporary folders next to `target` that killed runs left: the old
    reconstruction `_replace` moved aside, and work folders whose lock nobody holds."""
    for leftover in target.parent.glob(f".{target.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for path in target.parent.glob(f".{target.name}.partial-*"):
        lock_path = path.with_name(path.name.removesuffix(".lock") + ".lock")
        if lock_path.exists():
            with open(lock_path, "a+b") as lock:
                if not try_lock(lock):
                    continue  # a run in progress
        shutil.rmtree(lock_path.with_name(lock_path.name.removesuffix(".lock")), ignore_errors=True)
        lock_path.unlink(missing_ok=True)


def _replace(target: Path, new: Path) -> None:
    """Swap `new` in as `target`; the old folder is moved aside first, then deleted."""
    try:
        if not target.exists():
            new.rename(target)
            return
        trash = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        target.rename(trash / target.name)
        new.rename(target)
    except OSError as exc:
        raise unwritable(target, exc) from exc
    shutil.rmtree(trash, ignore_errors=True)
