"""Expression curves as a CSV in Live Link Face's column layout, and back.

Columns: ``Timecode`` (``HH:MM:SS:FF.mmm``: hours, minutes, seconds, frame within the second at
the clip's rate, and the thousandths of a frame), ``BlendShapeCount`` (61: the 52 shapes plus
the 9 rotations), the 52 ARKit names capitalised (``EyeBlinkLeft`` ...), then ``HeadYaw``,
``HeadPitch``, ``HeadRoll``, ``LeftEyeYaw``, ``LeftEyePitch``, ``LeftEyeRoll``, ``RightEyeYaw``,
``RightEyePitch``, ``RightEyeRoll`` in radians (eye roll is always 0: the iris shows no roll).
One row per captured frame, timecode from the frame's timestamp.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UserError
from ..reconstruction_format import load_expression_curves, load_reconstruction, reconstruction_dir
from .arkit import ARKIT_NAMES

ROTATION_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
SHAPE_COLUMNS = tuple(name[0].upper() + name[1:] for name in ARKIT_NAMES)
HEADER = ("Timecode", "BlendShapeCount", *SHAPE_COLUMNS, *ROTATION_COLUMNS)
BLEND_SHAPE_COUNT = len(SHAPE_COLUMNS) + len(ROTATION_COLUMNS)


@dataclass
class LiveLinkTake:
    """What a Live Link Face CSV holds, in this project's arrays."""

    timecodes: list[str]
    weights: np.ndarray  # (T, 52) in ARKIT_NAMES order
    head_rotation: np.ndarray  # (T, 3) yaw, pitch, roll, radians
    eye_gaze: np.ndarray  # (T, 2, 2) [left, right] x [yaw, pitch], radians


def export_livelink_csv(capture_dir: Path, path: Path) -> Path:
    """Write the solved curves of `capture_dir` as a Live Link Face CSV at `path`."""
    folder = reconstruction_dir(capture_dir)
    try:
        curves = load_expression_curves(folder)
        reconstruction = load_reconstruction(folder, memory_map=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{capture_dir} has no expression curves to export: {exc}",
                        "Reconstruct the capture first (its expression curves are solved at the end).",
                        code="no_reconstruction") from exc
    fps = float(reconstruction.header["fps"])
    write_livelink_csv(path, [timecode(t, fps) for t in reconstruction.timestamps], curves.weights,
                       curves.head_rotation, curves.eye_gaze)
    return Path(path)


def write_livelink_csv(path: Path, timecodes: list[str], weights: np.ndarray, head_rotation: np.ndarray,
                       eye_gaze: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rotations = np.concatenate([head_rotation, _eye_columns(eye_gaze[:, 0]), _eye_columns(eye_gaze[:, 1])], axis=1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for code, shapes, angles in zip(timecodes, weights, rotations):
            writer.writerow([code, BLEND_SHAPE_COUNT, *(f"{v:.6f}" for v in shapes), *(f"{v:.6f}" for v in angles)])


def read_livelink_csv(path: Path) -> LiveLinkTake:
    """Read a Live Link Face CSV (ours or the app's); columns are found by name."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}", "Check the path of the CSV file.") from exc
    if not rows:
        raise InputError(f"{path} is empty", "Export a Live Link Face CSV first.")
    column = {name.strip(): i for i, name in enumerate(rows[0])}
    missing = [name for name in ("Timecode", *SHAPE_COLUMNS[:-1]) if name not in column]
    if missing:
        raise InputError(f"{path} is not a Live Link Face CSV: it lacks the columns {', '.join(missing[:5])}",
                         "Export the take from Live Link Face (or with --livelink-csv) and pass that file.")
    body = [row for row in rows[1:] if row]

    def numbers(names: tuple[str, ...]) -> np.ndarray:
        values = np.zeros((len(body), len(names)))
        for j, name in enumerate(names):
            if name in column:
                try:
                    values[:, j] = [float(row[column[name]]) for row in body]
                except (ValueError, IndexError) as exc:
                    raise InputError(f"{path}: column {name} holds a value that is not a number ({exc})",
                                     "Re-export the CSV; a file cut off mid-row cannot be read.") from exc
        return values

    rotations = numbers(ROTATION_COLUMNS)
    return LiveLinkTake(
        timecodes=[row[column["Timecode"]] for row in body],
        weights=numbers(SHAPE_COLUMNS).astype(np.float32),
        head_rotation=rotations[:, :3],
        eye_gaze=np.stack([rotations[:, 3:5], rotations[:, 6:8]], axis=1),
    )


def timecode(seconds: float, fps: float) -> str:
    """``HH:MM:SS:FF.mmm`` for a time in seconds at `fps` frames per second."""
    whole = int(np.floor(seconds + 1e-9))
    frames = (seconds - whole) * fps
    frame = int(np.floor(frames + 1e-6))
    fraction = min(max(frames - frame, 0.0), 0.999)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{frame:02d}.{int(round(fraction * 1000)):03d}"


def timecode_seconds(code: str, fps: float) -> float:
    """The time in seconds of a ``HH:MM:SS:FF[.mmm]`` timecode at `fps`."""
    hours, minutes, seconds, frames = code.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + float(frames) / fps


def _eye_columns(gaze: np.ndarray) -> np.ndarray:
    return np.concatenate([gaze, np.zeros((len(gaze), 1))], axis=1)
