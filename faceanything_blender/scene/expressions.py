"""The expression control object: a capture's ARKit-52 curves as animated custom properties.

``FA_expressions`` (an empty under the capture's root, marked with ``EXPRESSIONS_KEY``) carries
one float property per ARKit name (``jawOpen``, 0..1) and seven angles in radians (``headYaw``,
``headPitch``, ``headRoll``, ``leftEyeYaw``, ``leftEyePitch``, ``rightEyeYaw``,
``rightEyePitch``), keyed on the scene frames of the captured frames. It holds no character:
the extension's Drive Shape Keys operator (faceanything_blender/expressions.py) points any
character's shape keys and bones at it. Compute (`control_channels`), then apply
(`create_control`), from the reconstruction folder's ``expressions.npz``.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..runtime_paths import runtime_module
from .animation import Curve, animate
from .empties import create_empty
from .timing import CaptureTiming

CONTROL_NAME = "FA_expressions"
EXPRESSIONS_KEY = "faceanything_expressions"
CONTROL_SIZE_M = 0.03
ANGLE_CHANNELS = ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")
GROUP_SHAPES, GROUP_ANGLES = "ARKit", "Head and eyes"


def control_channels(track) -> dict[str, np.ndarray]:
    """Property name -> (T,) values of an ``ExpressionTrack`` (reconstruction_format)."""
    channels = {name: np.asarray(track.weights[:, i], np.float64) for i, name in enumerate(track.names)}
    angles = np.concatenate([track.head_rotation, track.eye_gaze.reshape(len(track.eye_gaze), 4)], axis=1)
    channels.update({name: angles[:, i] for i, name in enumerate(ANGLE_CHANNELS)})
    return channels


def create_control(name: str, channels: dict[str, np.ndarray], frames: np.ndarray,
                   action: bpy.types.Action) -> bpy.types.Object:
    """An empty carrying ``channels`` as custom properties keyed at ``frames`` in ``action``."""
    control = create_empty(name, "SPHERE", CONTROL_SIZE_M)
    control[EXPRESSIONS_KEY] = True
    curves = []
    for prop, values in channels.items():
        control[prop] = float(values[0])
        ui = control.id_properties_ui(prop)
        if prop in ANGLE_CHANNELS:
            ui.update(subtype="ANGLE", min=-np.pi, max=np.pi)
            group = GROUP_ANGLES
        else:
            ui.update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0)
            group = GROUP_SHAPES
        curves.append(Curve(f'["{prop}"]', 0, frames, values, group))
    animate(control, action, curves)
    return control


def read_track(capture_dir: Path):
    """The capture's ``ExpressionTrack``, or None when its reconstruction has no curves yet."""
    formats = runtime_module("reconstruction_format")
    folder = formats.reconstruction_dir(capture_dir)
    if not (folder / formats.EXPRESSIONS_FILE).is_file():
        return None
    return formats.load_expression_curves(folder)


def add_expression_control(made, capture_dir: Path, timing: CaptureTiming, parent: bpy.types.Object,
                           warnings: list[str]) -> bpy.types.Object | None:
    """The capture's control object (placed and tagged through ``made``, a build.CaptureData),
    or None with a warning when the reconstruction has no expression curves."""
    try:
        track = read_track(capture_dir)
    except (OSError, ValueError, KeyError) as exc:
        warnings.append(f"The expression curves of {capture_dir} cannot be read ({exc}); reconstruct again.")
        return None
    if track is None:
        return None
    if track.frame_count != len(timing.scene_frames):
        warnings.append(f"The expression curves of {capture_dir} have {track.frame_count} frames, the capture "
                        f"{len(timing.scene_frames)}: reconstruct again to solve them anew.")
        return None
    frames = timing.scene_frames.astype(np.float64)
    return made.place(create_control(CONTROL_NAME, control_channels(track), frames, made.action), parent)
