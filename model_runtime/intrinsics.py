"""Pinhole intrinsics for a frame, from a known focal length or a default field of view.

The principal point is the image centre in the pixel-centre convention, ((W - 1) / 2,
(H - 1) / 2), and pixels are square (fx = fy).

When the focal length is unknown the camera is assumed to have a 50 degree horizontal field of
view (about a 39 mm lens on a full-frame sensor). That is between the wide main camera of a
phone or a webcam (65-75 degrees) and a portrait lens (25-40 degrees), so it is off by at most
~40 % for either. A wrong focal length mostly rescales the recovered distance to the face (depth
is proportional to the focal length for a face of known size); the shape of the face changes
little, since a face is shallow compared with its distance.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InputError

DEFAULT_HORIZONTAL_FOV_DEG = 50.0
FULL_FRAME_SENSOR_WIDTH_MM = 36.0


def intrinsics_for(
    width: int,
    height: int,
    focal_px: float | None = None,
    focal_mm: float | None = None,
    sensor_width_mm: float = FULL_FRAME_SENSOR_WIDTH_MM,
) -> np.ndarray:
    """(3, 3) float64 pinhole matrix for a ``width`` x ``height`` frame.

    Give the focal length in pixels, or in millimetres with the sensor width (default full
    frame, 36 mm, so that 35 mm-equivalent focal lengths work), or neither for the default
    field of view.
    """
    if width <= 0 or height <= 0:
        raise InputError(f"Frame size {width}x{height} has no pixels.", hint="Check the footage.")
    if focal_px is not None and focal_mm is not None:
        raise InputError("Both a focal length in pixels and one in millimetres were given.",
                         hint="Give only one of them.")
    if focal_mm is not None:
        if focal_mm <= 0 or sensor_width_mm <= 0:
            raise InputError(f"Focal length {focal_mm} mm on a {sensor_width_mm} mm sensor is not positive.",
                             hint="Give positive millimetres, e.g. 35mm or 35mm/23.5.")
        focal_px = focal_mm / sensor_width_mm * width
    elif focal_px is None:
        focal_px = width / 2 / math.tan(math.radians(DEFAULT_HORIZONTAL_FOV_DEG) / 2)
    elif focal_px <= 0:
        raise InputError(f"Focal length {focal_px} px is not positive.", hint="Give e.g. 1200px.")
    return np.array([
        [focal_px, 0.0, (width - 1) / 2],
        [0.0, focal_px, (height - 1) / 2],
        [0.0, 0.0, 1.0],
    ])
