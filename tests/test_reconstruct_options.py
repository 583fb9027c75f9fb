"""Reconstruction options and point requests as the CLI and the server pass them."""
import pytest

from model_runtime.errors import UserError
from model_runtime.reconstruct import PointRequest, ReconstructOptions, parse_points


def test_parse_points_reads_every_written_form():
    points = parse_points(["0.01,0.02,0.03", "mole=0,-0.05,0.02", "pixel:12:180.5:140", "tip=pixel:3:10:20", "mouth_corner_L"])
    assert points == [
        PointRequest(canonical=(0.01, 0.02, 0.03)),
        PointRequest(name="mole", canonical=(0.0, -0.05, 0.02)),
        PointRequest(pixel=(12, 180.5, 140.0)),
        PointRequest(name="tip", pixel=(3, 10.0, 20.0)),
        PointRequest(landmark="mouth_corner_L"),
    ]


def test_parse_points_takes_request_json_and_semicolon_lists():
    assert parse_points([[0.1, 0.2, 0.3], "chin"]) == [PointRequest(canonical=(0.1, 0.2, 0.3)), PointRequest(landmark="chin")]
    assert parse_points("1,2,3; pixel:0:1:2") == [PointRequest(canonical=(1.0, 2.0, 3.0)), PointRequest(pixel=(0, 1.0, 2.0))]
    assert parse_points(None) == []


@pytest.mark.parametrize("text", ["1,2", "pixel:1:2", "pixel:-1:2:3", "pixel:a:2:3", "x=", "1,2,three", "not a point"])
def test_parse_points_rejects_malformed_requests_with_a_hint(text):
    with pytest.raises(UserError) as caught:
        parse_points([text])
    assert text in caught.value.message
    assert "pixel:FRAME:X:Y" in caught.value.hint


def test_options_parse_points_and_record_their_written_form():
    options = ReconstructOptions(points=["pixel:2:10:11", [0.0, 0.01, 0.02]])
    assert options.points[0] == PointRequest(pixel=(2, 10.0, 11.0))
    assert options.settings()["points"] == ["pixel:2:10:11", "0,0.01,0.02"]


def test_options_default_density_depends_on_the_mesh_mode():
    assert ReconstructOptions().density == "high"
    assert ReconstructOptions(mesh="dense").density == "medium"
    assert ReconstructOptions(mesh="dense", density="low").density == "low"


def test_options_choose_the_filter():
    assert ReconstructOptions(smooth="off").filter is None
    assert ReconstructOptions(smooth="on").filter == "savgol"


@pytest.mark.parametrize("field, value", [("mesh", "voxels"), ("density", "ultra"), ("smooth", "kalman"), ("radius", 0.0)])
def test_options_reject_unknown_choices(field, value):
    with pytest.raises(UserError) as caught:
        ReconstructOptions(**{field: value})
    assert caught.value.code == "bad_option"
