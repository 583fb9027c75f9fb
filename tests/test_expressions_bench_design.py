"""The expression bench's designed clips exercise every scored shape, and never make two shapes
that pull the same skin opposite ways at once (a blink inside an eyeWide cannot be scored: the
eye's aperture shows their sum)."""
import numpy as np
import pytest

from bench.expression_curves import BLINKS, CLIPS, DESIGNS, HELD_OUT, designed_weights, to_arkit
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
