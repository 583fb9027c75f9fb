"""The ARKit names and their spellings, and the basis derived from ICT-FaceKit onto the template."""
import numpy as np
import pytest

from bench import expression_basis as build_basis
from model_runtime.expressions.arkit import ARKIT_NAMES, INDEX, match_shape_keys, normalise_name
from model_runtime.expressions.solver import load_basis, load_pose_bias
from model_runtime.template import load_template


def test_the_52_names_in_live_link_face_order():
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[:2] == ("eyeBlinkLeft", "eyeLookDownLeft") and ARKIT_NAMES[-1] == "tongueOut"


@pytest.mark.parametrize("spelling, name", [
    ("eyeBlink_L", "eyeBlinkLeft"), ("EyeBlinkLeft", "eyeBlinkLeft"), ("Faceit_eyeBlink.L", "eyeBlinkLeft"),
    ("eye_blink_left", "eyeBlinkLeft"), ("Fcl_eyeBlinkR", "eyeBlinkRight"), ("mouthUpperUp_R", "mouthUpperUpRight"),
    ("blendShape1.jawOpen", "jawOpen"), ("JAWOPEN", "jawOpen"), ("mouthRollUpper", "mouthRollUpper"),
    ("mouthLeft", "mouthLeft"), ("browInnerUp", "browInnerUp"), ("ARKit_cheekPuff", "cheekPuff"),
])
def test_spellings_of_a_name_match_it(spelling, name):
    assert match_shape_keys([spelling]) == {spelling: name}


def test_other_shape_keys_do_not_match_and_the_first_spelling_wins():
    matches = match_shape_keys(["Basis", "smile", "jawOpen", "JawOpen", "mouthRoll", "Key 1"])
    assert matches == {"jawOpen": "jawOpen"}
    assert normalise_name("mouthRollUpper") != normalise_name("mouthRollUp_R")


def test_the_geometric_basis_moves_the_right_landmarks_the_right_way():
    basis, marks = load_basis("geometric"), load_template().landmarks
    assert basis.shape == (52, 478, 3)
    assert basis[INDEX["jawOpen"], marks["chin"], 1] < -0.015  # the chin drops
    assert basis[INDEX["eyeBlinkLeft"], marks["eye_upper_lid_L"], 1] < -0.004  # the left upper lid closes
    assert np.abs(basis[INDEX["eyeBlinkLeft"], marks["eye_upper_lid_R"]]).max() < 1e-4  # and only the left
    smile = basis[INDEX["mouthSmileLeft"], marks["mouth_corner_L"]]
    assert smile[0] > 0.003 and smile[1] > 0.003  # the left corner goes out and up
    assert basis[INDEX["browInnerUp"], marks["brow_inner_L"], 1] > 0.003
    assert basis[INDEX["browInnerUp"], marks["brow_inner_R"], 1] > 0.003  # ICT's two halves summed
    assert np.abs(basis[INDEX["jawOpen"], marks["upper_lip_inner"]]).max() < 0.005  # the upper lip stays
    assert not basis[INDEX["tongueOut"]].any()


def test_the_committed_basis_is_what_the_script_derives():
    if not build_basis.ICT_PATH.is_file():
        pytest.skip(f"needs the ICT-FaceKit model of ../shared ({build_basis.ICT_PATH} is absent)")
    derived, distance = build_basis.derive_basis(build_basis.ICT_PATH)
    np.testing.assert_allclose(derived, load_basis("geometric"), atol=1e-6)
    assert np.median(distance) < 0.002  # the template lies on the registered ICT surface
    assert build_basis.LICENSE_PATH.read_text().startswith("MIT License")


def test_the_observed_basis_is_the_geometric_one_as_the_capture_sees_it():
    observed, geometric, marks = load_basis("observed"), load_basis("geometric"), load_template().landmarks
    assert observed.shape == geometric.shape and not np.array_equal(observed, geometric)
    # the jaw line, the chin and the lower lip drop (measured at a weight small enough for the
    # capture to keep both the chin and the lip on the jump from rest: see bench/expression_basis.py)
    assert observed[INDEX["jawOpen"], [marks["lower_lip_outer"], marks["chin"]], 1].max() < -0.01
    assert observed[INDEX["jawOpen"], [marks["jaw_L_5"], marks["jaw_R_5"]], 1].max() < -0.005
    lid = marks["eye_upper_lid_L"]
    assert geometric[INDEX["eyeBlinkLeft"], lid, 1] < observed[INDEX["eyeBlinkLeft"], lid, 1] < -0.0005
    smile = observed[INDEX["mouthSmileLeft"], marks["mouth_corner_L"]]
    assert smile[0] > 0.002 and smile[1] > 0.002
    assert not observed[INDEX["tongueOut"]].any()


def test_a_measured_shape_is_kept_only_on_the_skin_its_shape_moves():
    template = load_template()
    geometric = np.zeros((52, 478, 3))
    geometric[INDEX["jawOpen"], template.landmarks["chin"], 1] = -0.02
    kept = build_basis.support_masked(np.ones((52, 478, 3)), geometric)
    moved = np.nonzero(kept[INDEX["jawOpen"]].any(axis=1))[0]
    neighbours = np.unique(template.triangles[(template.triangles == template.landmarks["chin"]).any(axis=1)])
    np.testing.assert_array_equal(moved, neighbours)  # the chin and its one ring of neighbours
    assert not np.delete(kept, INDEX["jawOpen"], axis=0).any()  # shapes that move nothing keep nothing


def test_the_committed_observed_basis_and_pose_bias_are_measured():
    observed, marks = load_basis("observed"), load_template().landmarks
    assert not observed[INDEX["eyeBlinkLeft"], marks["chin"]].any()  # a blink does not move the chin
    assert not observed[INDEX["jawOpen"], marks["brow_inner_L"]].any()
    bias = load_pose_bias()
    assert bias.shape == (4, 478, 3) and np.isfinite(bias).all() and np.abs(bias).max() > 0
    assert np.abs(bias).max() < 0.1  # metres per radian (squared): a bend, never a head's size
