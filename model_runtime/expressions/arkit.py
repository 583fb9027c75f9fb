"""The 52 ARKit blendshape names, in one order used everywhere (standard library only).

The order is Live Link Face's CSV column order (eyes left then right, jaw, mouth, brows, cheeks,
nose, tongue), so a CSV row and a weights row line up. ``_L``/``Left`` are the subject's left.
The Blender side loads this very file (see faceanything_blender/runtime_paths.py, `runtime_module`).
"""
from __future__ import annotations

import re

ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}

# The curves scored by the accuracy benchmark (the "expressive set").
EXPRESSIVE = (
    "jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel",
    "mouthPucker", "browInnerUp", "browDownLeft", "browDownRight", "mouthClose", "cheekPuff",
    "eyeWideLeft", "eyeWideRight", "mouthFrownLeft", "mouthFrownRight",
)

# Prefixes that character pipelines put before the ARKit names (Faceit, VRoid / VRM exports,
# Ready Player Me, MetaHuman-style "CTRL_expressions_", generic "blendShape1." from FBX).
KNOWN_PREFIXES = ("faceit_", "faceit.", "fcl_", "vrc.", "arkit_", "arkit.", "blendshape1.", "blendshape.",
                  "ctrl_expressions_", "expressions.", "shape_", "sk_")
# A side written as a word at the end (``Left``, ``_right``), or as one letter after a separator
# or a lower-case letter (``_L``, ``.R``, ``eyeBlinkL``); ``mouthRollUpper`` keeps its "r".
_SIDE_WORD = re.compile(r"[._ -]?(left|right)$", re.IGNORECASE)
_SIDE_LETTER = re.compile(r"(?:[._ -]|(?<=[a-z]))([LR])$")
_SIDE_LETTER_SEPARATED = re.compile(r"[._ -]([lr])$")


def normalise_name(name: str) -> str:
    """A key that spellings of one ARKit shape share: lower case, prefixes dropped, the side as
    a trailing ``left``/``right`` (``eyeBlink_L``, ``EyeBlinkLeft``, ``Faceit_eyeBlink.L`` and
    ``eye_blink_left`` all give ``eyeblinkleft``)."""
    text = name.strip()
    for prefix in KNOWN_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
            break
    side = ""
    for pattern in (_SIDE_WORD, _SIDE_LETTER, _SIDE_LETTER_SEPARATED):
        match = pattern.search(text)
        if match:
            side = "left" if match.group(1).lower().startswith("l") else "right"
            text = text[: match.start()]
            break
    return re.sub(r"[^a-z0-9]", "", text.lower()) + side


NORMALISED = {normalise_name(name): name for name in ARKIT_NAMES}


def match_shape_keys(shape_key_names) -> dict[str, str]:
    """Shape key name -> ARKit name for every key that is a spelling of one (the first key of a
    given ARKit name wins)."""
    matches: dict[str, str] = {}
    taken: set[str] = set()
    for key_name in shape_key_names:
        arkit = NORMALISED.get(normalise_name(key_name))
        if arkit is not None and arkit not in taken:
            matches[key_name] = arkit
            taken.add(arkit)
    return matches
