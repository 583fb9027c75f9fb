"""Solve a finished reconstruction's expression curves and write them beside it.

``solve_capture(capture_dir)`` reads ``CAPTURE_DIR/reconstruction/`` and writes
``expressions.npz`` there (layout in reconstruction_format.py). The gaze comes from the mesh's
own landmark vertices on a template mesh, else from the capture frames' MediaPipe landmarks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..capture_folder import CaptureFolder
from ..contract import CANONICAL_SPACE_ID
from ..errors import UserError
from ..reconstruction_format import load_reconstruction, reconstruction_dir, vertex_columns, write_expression_curves
from .arkit import ARKIT_NAMES
from .solver import MIN_REST_FRAMES, ExpressionCurves, SolverSettings, solve_sequence

LANDMARK_COUNT = 478


def solve_capture(capture_dir: Path, neutral_frame: int | None = None,
                  rest_frames: tuple[int, ...] | None = None) -> Path:
    """Solve the curves of the reconstruction in `capture_dir`; returns the written file.

    `neutral_frame`: the capture index of a frame with a neutral face, or None to estimate the
    neutral from the whole clip. `rest_frames`: capture indices of frames where the face is at
    rest while the head turns (the neutral, unless `neutral_frame` is given, and this face's
    pose bias are measured there; see `solver.solve_sequence`)."""
    capture_dir = Path(capture_dir)
    folder = reconstruction_dir(capture_dir)
    try:
        reconstruction = load_reconstruction(folder, memory_map=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"the reconstruction in {capture_dir} cannot be read: {exc}",
                        "Run the reconstruction first: python -m model_runtime reconstruct CAPTURE_DIR",
                        code="no_reconstruction") from exc
    if reconstruction.header.get("canonical_space") != CANONICAL_SPACE_ID:
        raise UserError(
            f"the reconstruction in {capture_dir} is in canonical space "
            f"{reconstruction.header.get('canonical_space')!r}; "
            f"expression curves need the template's space {CANONICAL_SPACE_ID!r}",
            "Reconstruct with --mesh template (or capture with the default backend).", code="bad_option")
    if neutral_frame is not None and not 0 <= neutral_frame < reconstruction.frame_count:
        raise UserError(f"neutral frame {neutral_frame} is outside {capture_dir}'s frames "
                        f"0..{reconstruction.frame_count - 1}",
                        "Pick a capture index of a frame with a neutral face, or leave it out to estimate one.",
                        code="bad_option")
    if rest_frames is not None and len(set(rest_frames)) < MIN_REST_FRAMES:
        raise UserError(f"the rest frames hold {len(set(rest_frames))} frame(s) of {capture_dir}; the expression "
                        f"curves need at least {MIN_REST_FRAMES}",
                        "Give the footage frames FIRST:LAST of a few seconds where the face is at rest while the "
                        "head turns, within the captured range, or leave the rest frames out.", code="bad_option")
    landmarks = None
    if reconstruction.header.get("mesh_mode") != "template":
        landmarks = capture_landmarks(capture_dir, reconstruction.frame_count)
    curves = solve_sequence(VerticesOnDisk(folder), reconstruction.head_pose,
                            reconstruction.canonical_vertices, landmarks=landmarks,
                            settings=SolverSettings(neutral_frame=neutral_frame, rest_frames=rest_frames))
    return write_expression_curves(folder, curve_arrays(curves))


class VerticesOnDisk:
    """A reconstruction's vertices as the solver indexes them (``[start:stop, columns]``), read
    from disk on each access (`reconstruction_format.vertex_columns`): the solver needs a few
    hundred vertices of a run of frames at a time, and a memory map of the whole array would
    stay resident."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __getitem__(self, key) -> np.ndarray:
        frames, columns = key
        if not isinstance(frames, slice) or frames.step not in (None, 1):
            raise IndexError("vertices are read a run of frames at a time: vertices[start:stop, columns]")
        if isinstance(columns, slice):
            columns = np.arange(columns.stop)[columns]
        return vertex_columns(self.folder, np.asarray(columns), frames=frames)


def curve_arrays(curves: ExpressionCurves) -> dict:
    """The arrays of expressions.npz for solved curves."""
    return {
        "names": np.array(ARKIT_NAMES),
        "weights": curves.weights.astype(np.float32),
        "head_rotation": curves.head_rotation.astype(np.float64),
        "head_translation": curves.head_translation.astype(np.float64),
        "eye_gaze": curves.eye_gaze.astype(np.float64),
        "neutral_frame": np.int64(curves.neutral_frame),
    }


def capture_landmarks(capture_dir: Path, frame_count: int) -> np.ndarray | None:
    """(T, 478, 3) camera-space landmarks from the capture frames, frames without them taking
    the nearest frame's; None when no frame has landmarks (then the gaze stays 0)."""
    capture = CaptureFolder(capture_dir)
    found = {}
    for index in range(frame_count):
        maps = capture.frame(index)
        if maps.landmarks3d is not None and len(maps.landmarks3d) >= LANDMARK_COUNT:
            found[index] = np.asarray(maps.landmarks3d[:LANDMARK_COUNT], np.float64)
    if not found:
        return None
    known = np.array(sorted(found))
    nearest = known[np.abs(known[None, :] - np.arange(frame_count)[:, None]).argmin(axis=1)]
    return np.stack([found[int(i)] for i in nearest])
