"""The expression bench's designed clips exercise every scored shape, and never make two shapes
that pull the same skin opposite ways at once (a blink inside an eyeWide cannot be scored: the
eye's aperture shows their sum)."""
from dataclasses import dataclass

import numpy as np
import pytest

from bench.expression_curves import (BLINKS, CLIPS, DESIGNS, HELD_OUT, LEAD_IN_FRAMES, designed_weights,
                                     lead_in_spec, to_arkit)
from model_runtime.expressions.arkit import ARKIT_NAMES, EXPRESSIVE, INDEX

FRAMES, FPS = 72, 25.0
ANTAGONISTS = (
    ("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight"), ("mouthSmileLeft", "mouthFrownLeft"),
    ("mouthSmileRight", "mouthFrownRight"), ("browDownLeft", "browInnerUp"), ("browDownRight", "browInnerUp"),
    ("mouthFunnel", "mouthPucker"), ("mouthSmileLeft", "cheekPuff"), ("mouthSmileRight", "cheekPuff"),
)


def ict_like_names() -> list[str]:
    """ICT-FaceKit's spelling of the ARKit names (_L/_R, browInnerUp and cheekPuff in halves)."""
    names = []
    for name in ARKIT_NAMES:
        if name in ("browInnerUp", "cheekPuff"):
            names += [name + "_L", name + "_R"]
        elif name.endswith("Left"):
            names.append(name[: -len("Left")] + "_L")
        elif name.endswith("Right"):
            names.append(name[: -len("Right")] + "_R")
        elif name != "tongueOut":
            names.append(name)
    return names


def clip_weights(design: str) -> np.ndarray:
    names = ict_like_names()
    return to_arkit(designed_weights(design, FRAMES, FPS, names), names)


@pytest.mark.parametrize("design", [design for design, _ in CLIPS + (HELD_OUT,)])
def test_no_two_antagonists_at_once(design):
    weights = clip_weights(design)
    for first, second in ANTAGONISTS:
        both = np.minimum(weights[:, INDEX[first]], weights[:, INDEX[second]])
        assert both.max() < 0.01, f"clip {design}: {first} and {second} at once"


def test_every_scored_shape_is_exercised_in_the_scored_and_the_held_out_clips():
    scored = np.concatenate([clip_weights(design) for design, _ in CLIPS])
    held_out = clip_weights(HELD_OUT[0])
    for name in EXPRESSIVE:
        assert scored[:, INDEX[name]].max() >= 0.3 and held_out[:, INDEX[name]].max() >= 0.3, name
        assert (scored[:, INDEX[name]] > 0.05).sum() >= 8, name  # enough frames for a correlation
    assert HELD_OUT[1] not in [seed for _, seed in CLIPS] and HELD_OUT[0] in DESIGNS and HELD_OUT[0] in BLINKS


@dataclass
class ClipMotion:
    """The fields of a SequenceSpec that `lead_in_spec` reads and replaces."""
    fps: float
    head_angles: np.ndarray
    head_positions: np.ndarray
    frame_count: int = FRAMES
    expressions: np.ndarray | None = None


def test_the_rest_lead_in_turns_the_head_at_rest_and_runs_into_the_clip():
    names = ict_like_names()
    angles = np.column_stack([np.linspace(5, 9, FRAMES), np.linspace(-2, 0, FRAMES), np.zeros(FRAMES)])
    positions = np.tile([0.01, 0.0, 0.6], (FRAMES, 1))
    lead = lead_in_spec(ClipMotion(FPS, angles, positions), names)
    weights = to_arkit(lead.expressions, names)
    assert lead.frame_count == LEAD_IN_FRAMES == len(lead.head_angles) == len(weights)
    blinks = [INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]
    assert weights[:, blinks].max() == 1.0 and np.delete(weights, blinks, axis=1).max() == 0.0
    assert np.ptp(lead.head_angles[:, 0]) >= 30 and np.ptp(lead.head_angles[:, 1]) >= 15
    step = np.abs(np.diff(np.vstack([lead.head_angles, angles[:1]]), axis=0)).max()
    assert step < 4.0  # degrees a frame: the head runs on into the clip's first pose
    np.testing.assert_array_equal(lead.head_positions, np.tile(positions[0], (LEAD_IN_FRAMES, 1)))
