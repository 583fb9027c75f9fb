"""The capture's camera: OpenCV pinhole intrinsics as a Blender camera, footage as background.

Derivation (Blender's view plane, ``BKE_camera_params_compute_viewplane``): the sensor spans
``view_pixels`` pixels (the width for a horizontal fit, the pixel-aspect-corrected height for a
vertical one), so ``fx = lens * view_pixels / sensor`` for a horizontal fit. The shift moves the
view plane by ``shift * view_pixels`` pixels. Blender puts pixel centres at ``i + 0.5`` on a
plane centred on ``W / 2``; OpenCV puts them at ``i``, so an unshifted optical axis passes
through OpenCV pixel ``(W - 1) / 2`` and

    shift_x = ((W - 1) / 2 - cx) / view_pixels
    shift_y = ycor * (cy - (H - 1) / 2) / view_pixels     (image rows go down, Blender's y up)

with ``ycor = fx / fy``, the height of a pixel over its width, which Blender takes as the
render's pixel aspect.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from .animation import Curve, animate
from .axes import CAMERA_ROTATION_EULER, opencv_pixels_to_clip

SENSOR_MM = 36.0
CLIP_START_M = 0.01
CLIP_END_M = 100.0
# Relative change of lens or shift across frames below which one value serves every frame.
CONSTANT_TOLERANCE = 1e-6


@dataclass
class CameraLens:
    sensor_fit: str  # 'HORIZONTAL' or 'VERTICAL'
    pixel_aspect: tuple[float, float]  # render pixel_aspect_x, pixel_aspect_y
    lens: np.ndarray  # (T,) millimetres
    shift_x: np.ndarray  # (T,)
    shift_y: np.ndarray  # (T,)

    @property
    def varies(self) -> bool:
        return any(
            np.ptp(values) > CONSTANT_TOLERANCE * max(1.0, float(np.abs(values).max()))
            for values in (self.lens, self.shift_x, self.shift_y)
        )


def camera_lens(intrinsics: np.ndarray, width: int, height: int) -> CameraLens:
    """Blender camera settings for (T, 3, 3) pixel intrinsics of ``width`` x ``height`` frames.
    The pixel aspect (fx / fy) is frame 0's; focal length and principal point may vary."""
    k = np.asarray(intrinsics, np.float64).reshape(-1, 3, 3)
    fx, cx, cy = k[:, 0, 0], k[:, 0, 2], k[:, 1, 2]
    ycor = float(k[0, 0, 0] / k[0, 1, 1])
    horizontal = width >= ycor * height
    view_pixels = width if horizontal else ycor * height
    return CameraLens(
        sensor_fit="HORIZONTAL" if horizontal else "VERTICAL",
        pixel_aspect=(1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0),
        lens=fx * SENSOR_MM / view_pixels,
        shift_x=((width - 1) / 2 - cx) / view_pixels,
        shift_y=ycor * (cy - (height - 1) / 2) / view_pixels,
    )


def create_camera(
    name: str,
    lens: CameraLens,
    frames: np.ndarray,
    action: bpy.types.Action,
    clip: bpy.types.MovieClip | None,
) -> bpy.types.Object:
    """A camera at the origin looking along world +Y (see axes.py), lens animated if it varies."""
    data = bpy.data.cameras.new(name)
    data.sensor_fit = lens.sensor_fit
    data.sensor_width = data.sensor_height = SENSOR_MM
    data.lens = float(lens.lens[0])
    data.shift_x = float(lens.shift_x[0])
    data.shift_y = float(lens.shift_y[0])
    data.clip_start, data.clip_end = CLIP_START_M, CLIP_END_M
    if lens.varies:
        animate(data, action, [
            Curve("lens", 0, frames, lens.lens, "Lens"),
            Curve("shift_x", 0, frames, lens.shift_x, "Lens"),
            Curve("shift_y", 0, frames, lens.shift_y, "Lens"),
        ])
    if clip is not None:
        show_footage(data, clip)
    camera = bpy.data.objects.new(name, data)
    camera.rotation_euler = CAMERA_ROTATION_EULER
    return camera


def show_footage(data: bpy.types.Camera, clip: bpy.types.MovieClip) -> None:
    data.show_background_images = True
    background = data.background_images.new()
    background.source = "MOVIE_CLIP"
    background.use_camera_clip = False
    background.clip = clip
    background.frame_method = "STRETCH"
    background.alpha = 1.0


def configure_render(scene: bpy.types.Scene, width: int, height: int, lens: CameraLens) -> None:
    render = scene.render
    render.resolution_x, render.resolution_y = int(width), int(height)
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = lens.pixel_aspect


def configure_tracking_camera(clip: bpy.types.MovieClip, intrinsics: np.ndarray, width: int, height: int) -> None:
    """Give the clip's tracking camera (what Blender's camera solve and undistortion use)
    frame 0's pixel intrinsics: the focal length in pixels on the same 36 mm sensor as the
    capture's camera, the principal point, and the pixel aspect fy / fx (Blender's render
    pixel aspect x / y, as `camera_lens` sets it); no lens distortion."""
    k = np.asarray(intrinsics, np.float64).reshape(-1, 3, 3)[0]
    camera = clip.tracking.camera
    camera.sensor_width = SENSOR_MM
    camera.units = "PIXELS"
    camera.focal_length_pixels = float(k[0, 0])
    camera.pixel_aspect = float(k[1, 1] / k[0, 0])
    principal = opencv_pixels_to_clip(k[:2, 2], width, height) * (width, height)
    camera.principal_point_pixels = principal.tolist()
    camera.k1 = camera.k2 = camera.k3 = 0.0
