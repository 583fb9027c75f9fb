"""Every option of a capture and a reconstruction, declared once.

Each `Option` gives a name, a kind, its choices, default, unit and help text. Everything else is
derived from this table: the runtime CLI's flags (`add_arguments`), the server's request fields
and their validation (`protocol.REQUEST_FIELDS`, `validate`), the option classes the runtime
works with (`CaptureOptions`, `ReconstructOptions`), the Blender CLI's flags, the Blender
panel's properties, and the key of the extension's capture cache (`settings_key`). Values are
parsed and checked only here, so both processes accept and refuse the same things with the same
message.

Standard library only, so the Blender extension loads this very file (as it loads protocol.py).

Frame numbers follow one convention, stated in `frame_numbers.py`: the footage's own numbers.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError

CAPTURE, RECONSTRUCT, EXPORT = "capture", "reconstruct", "export"
STAGES = (CAPTURE, RECONSTRUCT)
"""The stages whose options make a capture; EXPORT's only say what to write from one."""
SCHEMA_VERSION = 2
"""Raised when an option's meaning changes, so that caches keyed on `settings_key` are remade."""

TEXT, CHOICE, FLAG, NUMBER, TEXT_LIST, MAPPING = "text", "choice", "flag", "number", "text_list", "mapping"


@dataclass(frozen=True)
class Option:
    """One option. `default` None means "not given"; `panel` False keeps it off the Blender panel
    (it stays in both CLIs and the protocol); `hashed` False leaves it out of the settings that
    identify a capture (`settings_key`)."""

    name: str
    stage: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    metavar: str = ""
    panel: bool = True
    hashed: bool = True
    check: Callable[[Any], Any] | None = None
    """Parses and validates a value (a CLI string or a request's JSON value); returns it normalised."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").title()

    @property
    def is_frame_range(self) -> bool:
        """A FIRST:LAST range of footage frame numbers (the panel offers to fill it from the timeline)."""
        return self.metavar.startswith("FIRST:LAST")

    @property
    def is_frame_number(self) -> bool:
        """One footage frame number (the panel offers to fill it with the timeline's current frame)."""
        return self.metavar == "FRAME"

    def help_text(self) -> str:
        """The help with its choices, unit and default, as both CLIs show it."""
        parts = [self.help]
        if self.unit:
            parts.append(f"unit: {self.unit}")
        if self.kind in (CHOICE, FLAG) or self.default not in (None, [], {}):
            parts.append(f"default: {_shown(self.default)}")
        return "; ".join(parts)


def _shown(value) -> str:
    if value is True or value is False:
        return "on" if value else "off"
    return str(value)


def bad_option(option: str, message: str, hint: str) -> UserError:
    return UserError(f"{option}: {message}", hint, code="bad_option")


# -- parsers: one grammar per value ------------------------------------------------------------

_FRAMES = re.compile(r"^\s*(?P<first>\d*)\s*:\s*(?P<last>\d*)\s*(?::\s*(?P<step>\d+)\s*)?$")
FRAMES_HINT = ("Write FIRST:LAST or FIRST:LAST:STEP in the footage's own frame numbers, both included "
               "(e.g. 1:100, 1001:1100:2; 10: runs to the end).")


def parse_frames(text, option: str = "frames") -> tuple[int | None, int | None, int]:
    """``"FIRST:LAST[:STEP]"`` -> (first or None, last or None, step); both ends included.
    `option`: the option the text was given for, named in errors."""
    match = _FRAMES.match(str(text)) if isinstance(text, str) else None
    if not match:
        raise bad_option(option, f"{text!r} is not FIRST:LAST[:STEP] with whole non-negative numbers", FRAMES_HINT)
    first = int(match["first"]) if match["first"] else None
    last = int(match["last"]) if match["last"] else None
    step = int(match["step"] or 1)
    if step < 1:
        raise bad_option(option, f"{text!r} has step {step}; it must be 1 or more", FRAMES_HINT)
    if first is not None and last is not None and last < first:
        raise bad_option(option, f"{text!r} is empty: LAST comes before FIRST", FRAMES_HINT)
    return first, last, step


def _check_frame_range(option: str):
    def check(value) -> str:
        parse_frames(value, option)
        return str(value).replace(" ", "")

    return check


_FOCAL = re.compile(
    r"^\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>px|mm)\s*(?:/\s*(?P<sensor>\d+(?:\.\d*)?|\.\d+)\s*(?:mm)?)?\s*$",
    re.IGNORECASE,
)
FOCAL_HINT = ("Write the focal length in pixels (1200px), in 35 mm-equivalent millimetres (35mm), or in "
              "millimetres with the sensor width in mm (35mm/23.5).")


def parse_focal(text) -> dict[str, float]:
    """Keyword arguments of `intrinsics.intrinsics_for` from ``1200px``, ``35mm`` or ``35mm/23.5``."""
    match = _FOCAL.match(text) if isinstance(text, str) else None
    if not match or float(match["value"]) <= 0 or (match["sensor"] and float(match["sensor"]) <= 0):
        raise bad_option("focal", f"cannot read the focal length {text!r}", FOCAL_HINT)
    value = float(match["value"])
    if match["unit"].lower() == "px":
        if match["sensor"]:
            raise bad_option("focal", f"{text!r} gives a sensor width for a value in pixels", FOCAL_HINT)
        return {"focal_px": value}
    if match["sensor"]:
        return {"focal_mm": value, "sensor_width_mm": float(match["sensor"])}
    return {"focal_mm": value}


def _check_focal(value) -> str:
    parse_focal(value)
    return str(value).strip().lower().replace(" ", "")


def _check_backend_options(value) -> dict:
    """A dict, or CLI ``KEY=VALUE`` strings (VALUE read as JSON, else as a word)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = [_backend_option(text) for text in value]
    else:
        raise bad_option("backend_options", f"{value!r} is not a mapping",
                         "Give KEY=VALUE pairs, e.g. window=16 resolution=336.")
    options = dict(items)
    for key in options:
        if not isinstance(key, str) or not key.isidentifier():
            raise bad_option("backend_options", f"{key!r} is not a setting name", "Give KEY=VALUE pairs, e.g. window=16.")
    return options


def _backend_option(text: str) -> tuple[str, object]:
    key, separator, value = text.partition("=")
    if not separator or not key.isidentifier():
        raise bad_option("backend_options", f"{text!r} is not KEY=VALUE", "Give KEY=VALUE pairs, e.g. window=16.")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare word is a string


def _check_points(value) -> list[str]:
    """Point requests in their written form (see `PointRequest`), each checked."""
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)):
        raise _point_error(value)
    texts = []
    for item in value:
        if isinstance(item, (list, tuple)):
            item = ",".join(str(part) for part in item)
        if not isinstance(item, str):
            raise _point_error(item)
        for part in item.split(";"):
            if part.strip():
                texts.append(parse_point(part.strip()).text())
    return texts


def _check_positive(name: str) -> Callable[[Any], float]:
    def check(value) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not number > 0 or number == float("inf"):
            raise bad_option(name, f"{value!r} is not a positive number", f"Give a positive {name}.")
        return number

    return check


def _check_frame_number(option: str):
    def check(value) -> int:
        if isinstance(value, bool) or not str(value).strip().isdigit():
            raise bad_option(option, f"{value!r} is not a frame number", "Give a footage frame number, e.g. 1.")
        return int(str(value).strip())

    return check


# -- point requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointRequest:
    """One extra point to track: exactly one of `canonical`, `pixel` or `landmark` is set.

    Written as ``X,Y,Z`` (a canonical coordinate; metres in the default canonical space),
    ``pixel:FRAME:X:Y`` (the canonical coordinate under pixel (X, Y) of footage frame FRAME;
    pixel centres at whole numbers), a template landmark name such as ``mouth_corner_L``, or
    either of the first two behind ``NAME=`` to name the point (default ``user_1``, ...).
    """

    name: str | None = None
    canonical: tuple[float, float, float] | None = None
    pixel: tuple[int, float, float] | None = None
    landmark: str | None = None

    def text(self) -> str:
        """The request as the user would write it (recorded in the reconstruction header)."""
        if self.landmark:
            return self.landmark
        body = "pixel:{}:{:g}:{:g}".format(*self.pixel) if self.pixel else ",".join(f"{v:g}" for v in self.canonical)
        return f"{self.name}={body}" if self.name else body


def parse_point(text: str) -> PointRequest:
    name, _, body = text.rpartition("=")
    name = name.strip() or None
    body = body.strip()
    if body.startswith("pixel:"):
        parts = body.split(":")[1:]
        try:
            frame, x, y = int(parts[0]), float(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            raise _point_error(text) from None
        if len(parts) != 3 or frame < 0:
            raise _point_error(text)
        return PointRequest(name=name, pixel=(frame, x, y))
    if "," in body:
        try:
            values = tuple(float(part) for part in body.split(","))
        except ValueError:
            raise _point_error(text) from None
        if len(values) != 3:
            raise _point_error(text)
        return PointRequest(name=name, canonical=values)
    if name is None and body.replace("_", "").isalnum():
        return PointRequest(landmark=body)
    raise _point_error(text)


def _point_error(value) -> UserError:
    return bad_option(
        "points", f"cannot read the point request {value!r}",
        "Write a point as X,Y,Z (canonical coordinate), pixel:FRAME:X:Y, a landmark name such as "
        "mouth_corner_L, or NAME=X,Y,Z / NAME=pixel:FRAME:X:Y; separate points with spaces.",
    )


# -- the options -----------------------------------------------------------------------------------

OPTIONS: tuple[Option, ...] = (
    Option("frames", CAPTURE, TEXT, None,
           "frames to capture, FIRST:LAST or FIRST:LAST:STEP in the footage's own frame numbers, both included "
           "(default: all)", metavar="FIRST:LAST[:STEP]", check=_check_frame_range("frames")),
    Option("focal", CAPTURE, TEXT, None,
           "focal length: 1200px, 35mm (35 mm equivalent) or 35mm/23.5 (sensor width in mm); empty: unknown "
           "(the network solves it; landmarks assume a 50 degree horizontal view)", metavar="FOCAL",
           check=_check_focal),
    Option("backend", CAPTURE, CHOICE, "mediapipe",
           "mediapipe: landmarks made dense, on the CPU, nothing to download; faceanything: the Face Anything "
           "network (needs its checkpoint; a GPU is advised)", choices=("mediapipe", "faceanything")),
    Option("still_images", CAPTURE, FLAG, False,
           "treat every frame as an unrelated photo instead of a sequence (a single image always is one)"),
    Option("appearance", CAPTURE, FLAG, True,
           "appearance stage (sequences only): tracks follow the skin's texture from frame to frame. MediaPipe "
           "backend: landmarks moved by optical flow checked against the first frame (off: MediaPipe's landmarks as "
           "they are); network backend: each canonical map blended with the previous one carried by optical flow"),
    Option("device", CAPTURE, CHOICE, "auto", "where the network runs: a GPU when there is one, else the CPU",
           choices=("auto", "cpu", "cuda", "mps"), panel=False),
    Option("checkpoint", CAPTURE, TEXT, None,
           "Face Anything weights: the checkpoint.pt you downloaded, or its converted .safetensors",
           metavar="FILE", panel=False),
    Option("backend_options", CAPTURE, MAPPING, {},
           "further backend settings as KEY=VALUE (VALUE read as JSON), e.g. window=16 overlap=4 resolution=336 "
           "mode=single", metavar="KEY=VALUE", panel=False, check=_check_backend_options),
    Option("overwrite", CAPTURE, FLAG, False,
           "replace a capture of other footage or settings in the output folder (a matching one is resumed)",
           panel=False, hashed=False),
    Option("mesh", RECONSTRUCT, CHOICE, "template",
           "template: the canonical face topology, subdivided; dense: a mesh seeded on a reference frame's face "
           "pixels", choices=("template", "dense")),
    Option("density", RECONSTRUCT, CHOICE, "auto",
           "mesh density: template low/medium/high = 478 / ~1.8k / ~7k vertices, dense about 500 / 2,000 / 8,000; "
           "auto: high for the template, medium for dense", choices=("auto", "low", "medium", "high")),
    Option("smooth", RECONSTRUCT, CHOICE, "on",
           "temporal smoothing of vertices, points and head pose (a cubic Savitzky-Golay filter over 0.2 s)",
           choices=("on", "off")),
    Option("points", RECONSTRUCT, TEXT_LIST, [],
           "extra points to track: landmark names, canonical X,Y,Z (metres) or pixel:FRAME:X:Y picked on a frame, "
           "separated by spaces", metavar="POINT", check=_check_points),
    Option("reference_frame", RECONSTRUCT, NUMBER, None,
           "the footage frame the dense mesh is seeded on (default: the first frame with a face)",
           metavar="FRAME", panel=False, check=_check_frame_number("reference_frame")),
    Option("neutral_frame", RECONSTRUCT, NUMBER, None,
           "a footage frame with a neutral face, the rest pose of the ARKit expression curves (default: estimated "
           "from the whole clip)", metavar="FRAME", check=_check_frame_number("neutral_frame")),
    Option("rest_frames", RECONSTRUCT, TEXT, None,
           "footage frames FIRST:LAST where the face is at rest (relaxed, mouth closed, eyes open) while the head "
           "turns left, right, up and down, e.g. the first seconds of a take: the ARKit expression curves take "
           "their neutral there and learn how the capture bends this face as the head turns (default: both "
           "are estimated from the whole clip)", metavar="FIRST:LAST", check=_check_frame_range("rest_frames")),
    Option("radius", RECONSTRUCT, NUMBER, 0.002,
           "a vertex counts as seen where the frame's canonical map passes this close to it; larger values fill "
           "fewer vertices at some cost in accuracy", unit="canonical units (metres)", panel=False,
           check=_check_positive("radius")),
    Option("tracks_csv", EXPORT, TEXT, None,
           "write the 2D point tracks as CSV: frame (footage frame number), name, x, y (pixels, 0 = the first "
           "pixel's centre), visible", metavar="FILE", panel=False),
    Option("livelink_csv", EXPORT, TEXT, None,
           "write the ARKit-52 expression curves, head and eye rotations as a Live Link Face CSV", metavar="FILE",
           panel=False),
    Option("mesh_file", EXPORT, TEXT, None, "write the mesh at --frame as .obj or .ply", metavar="FILE", panel=False),
    Option("frame", EXPORT, NUMBER, None, "the footage frame number of --mesh-file (default: the first captured frame)",
           metavar="FRAME", panel=False, check=_check_frame_number("frame")),
)
BY_NAME = {option.name: option for option in OPTIONS}


def options_for(*stages: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if option.stage in stages)


def check_value(option: Option, value):
    """One value, parsed from a CLI string or a request's JSON value and validated."""
    if value is None:
        return copy.copy(option.default)  # a fresh list or dict: a caller may change it
    if option.kind == CHOICE:
        value = value.lower() if isinstance(value, str) else value
        if value not in option.choices:
            raise bad_option(option.name, f"must be one of {', '.join(option.choices)}; got {value!r}",
                             f"Choose {option.flag} {option.default} (or another of the choices above).")
        return value
    if option.kind == FLAG:
        if isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("on", "true", "yes", "1")
        if not isinstance(value, bool):
            raise bad_option(option.name, f"must be true or false; got {value!r}", f"Give {option.flag} or leave it out.")
        return value
    if option.kind == TEXT and not isinstance(value, str):
        raise bad_option(option.name, f"must be text; got {value!r}", option.help_text())
    if option.kind == TEXT and not value.strip():
        return option.default
    return option.check(value) if option.check else value


def validate(values: dict, stages: tuple[str, ...] = STAGES) -> dict:
    """Every option of `stages`, from `values` (missing ones take their defaults); raises UserError."""
    known = {option.name for option in options_for(*stages)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise bad_option(unknown[0], "is not an option", f"Known options: {', '.join(sorted(known))}.")
    return {option.name: check_value(option, values.get(option.name)) for option in options_for(*stages)}


def settings_key(values: dict) -> str:
    """16 hex digits that change whenever a setting that changes the captured maps does.

    `values` are capture options as `validate` returns them (defaults filled in), with any
    runtime-resolved values (such as the frame range) substituted by the caller.
    """
    hashed = {name: value for name, value in values.items() if name in BY_NAME and BY_NAME[name].hashed}
    record = {"schema": SCHEMA_VERSION, **hashed}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def options_class(stage: str, class_name: str):
    """A dataclass with one field per option of `stage` that validates its values when made."""
    fields = []
    for option in options_for(stage):
        default = option.default
        if isinstance(default, (list, dict)):
            fields.append((option.name, Any, dataclasses.field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields.append((option.name, Any, dataclasses.field(default=default)))

    def __post_init__(self) -> None:
        for name, value in validate(dataclasses.asdict(self), (stage,)).items():
            setattr(self, name, value)

    return dataclasses.make_dataclass(class_name, fields, namespace={"__post_init__": __post_init__})


# -- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser, *stages: str, skip: tuple[str, ...] = ()) -> None:
    """One flag per option of `stages` on an argparse parser; values are checked by `validate`."""
    for option in options_for(*stages):
        if option.name in skip:
            continue
        if option.kind == FLAG:
            parser.add_argument(option.flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None,
                                help=option.help_text())
        elif option.kind == MAPPING:
            parser.add_argument(option.flag.removesuffix("s"), dest=option.name, action="append", metavar=option.metavar,
                                help=option.help_text())
        elif option.kind == TEXT_LIST:
            parser.add_argument(option.flag, dest=option.name, nargs="*", metavar=option.metavar, help=option.help_text())
        else:
            parser.add_argument(option.flag, dest=option.name, metavar=option.metavar or None,
                                choices=option.choices or None, help=option.help_text())


def values_from_arguments(args, *stages: str) -> dict:
    """The options of `stages` that the command line gave (argparse namespace -> dict)."""
    return {
        option.name: getattr(args, option.name)
        for option in options_for(*stages)
        if getattr(args, option.name, None) is not None
    }
