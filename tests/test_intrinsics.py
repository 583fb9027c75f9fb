"""Pinhole intrinsics from focal lengths and the default field of view."""
from __future__ import annotations

import math

import numpy as np
import pytest

from model_runtime.errors import InputError, UserError
from model_runtime.intrinsics import DEFAULT_HORIZONTAL_FOV_DEG, intrinsics_for
from model_runtime.option_schema import parse_focal


def test_principal_point_is_the_centre_in_pixel_centre_convention():
    k = intrinsics_for(360, 288, focal_px=500)
    np.testing.assert_array_equal(k, [[500, 0, 179.5], [0, 500, 143.5], [0, 0, 1]])


def test_default_field_of_view():
    k = intrinsics_for(1920, 1080)
    assert 2 * math.degrees(math.atan(1920 / 2 / k[0, 0])) == pytest.approx(DEFAULT_HORIZONTAL_FOV_DEG)
    assert k[0, 0] == k[1, 1]


def test_focal_in_millimetres_scales_with_sensor_width():
    assert intrinsics_for(3600, 2400, focal_mm=36)[0, 0] == pytest.approx(3600)
    assert intrinsics_for(2350, 1000, focal_mm=35, sensor_width_mm=23.5)[0, 0] == pytest.approx(3500)


def test_parse_focal():
    assert parse_focal("1200px") == {"focal_px": 1200.0}
    assert parse_focal(" 35 mm ") == {"focal_mm": 35.0}
    assert parse_focal("35mm/23.5") == {"focal_mm": 35.0, "sensor_width_mm": 23.5}
    assert parse_focal("24.5MM / 36mm") == {"focal_mm": 24.5, "sensor_width_mm": 36.0}
    assert intrinsics_for(1000, 800, **parse_focal("50mm"))[0, 0] == pytest.approx(50 / 36 * 1000)


@pytest.mark.parametrize("text", ["", "35", "mm", "-35mm", "0px", "35mm/0", "1200px/23.5", "35 inches", "abc"])
def test_parse_focal_rejects_garbage_with_a_hint(text):
    with pytest.raises(UserError) as error:
        parse_focal(text)
    assert repr(text) in error.value.message and "35mm" in error.value.hint


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError):
        intrinsics_for(0, 100)
    with pytest.raises(InputError):
        intrinsics_for(100, 100, focal_px=100, focal_mm=35)
    with pytest.raises(InputError):
        intrinsics_for(100, 100, focal_px=-1)
