"""Which scene frame shows which captured frame, and how Blender's players are told so.

Scene frame N shows footage frame number N (the runtime's ``frame_numbers.py`` states the
convention): the footage clip starts at the scene frame of the footage's first number. A capture
of every ``step``-th frame holds each captured frame until the next one, the same way in every
animation mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CaptureTiming:
    scene_frames: np.ndarray  # (T,) int64, scene frame of each capture index
    step: int  # footage frames between captured frames
    fps: int  # scene.render.fps
    fps_base: float  # scene.render.fps_base; fps / fps_base is the footage rate

    @property
    def first(self) -> int:
        return int(self.scene_frames[0])

    @property
    def last(self) -> int:
        return int(self.scene_frames[-1])


def scene_rate(fps: float) -> tuple[int, float]:
    """Blender's (fps, fps_base) for a frame rate: 29.97 -> (30, 1.001), 25 -> (25, 1.0)."""
    whole = max(1, round(fps))
    return whole, whole / fps


def capture_timing(frame_numbers: np.ndarray, fps: float) -> CaptureTiming | None:
    """Timing of captured frames (their footage frame numbers); None when they are not evenly
    spaced (the caller says so)."""
    numbers = np.asarray(frame_numbers, np.int64)
    steps = np.diff(numbers)
    if steps.size and (steps[0] < 1 or np.any(steps != steps[0])):
        return None
    whole, base = scene_rate(fps)
    return CaptureTiming(numbers, int(steps[0]) if steps.size else 1, whole, base)


def mesh_cache_mapping(timing: CaptureTiming) -> tuple[float, float]:
    """(frame_start, frame_scale) of a Mesh Cache modifier whose sample t is capture index t.

    The modifier reads sample ``round(frame_scale * frame - frame_start)`` (interpolation NONE).
    The half-step shift makes that round down, so every footage frame between two captured
    frames shows the earlier one, as the shape keys do.
    """
    step = timing.step
    return timing.first / step + (step - 1) / (2 * step), 1.0 / step


def shape_key_switches(timing: CaptureTiming) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per capture index, the (frames, values) of its shape key's constant-interpolation curve:
    1 from its own frame until the next captured frame, 0 elsewhere. The first and last keys
    also hold before and after the capture, like the Mesh Cache modifier."""
    frames = timing.scene_frames.astype(np.float64)
    curves = []
    for t in range(len(frames)):
        keys = [(frames[t], 1.0)]
        if t > 0:
            keys.insert(0, (frames[t - 1], 0.0))
        if t < len(frames) - 1:
            keys.append((frames[t + 1], 0.0))
        at, values = zip(*keys)
        curves.append((np.array(at), np.array(values)))
    return curves
