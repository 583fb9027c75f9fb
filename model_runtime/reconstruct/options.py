"""What the user chooses for a reconstruction, and how point requests are written.

Points are given on the command line (``--points``) or in a ``reconstruct`` request as:

* ``X,Y,Z`` or ``[X, Y, Z]``: a canonical coordinate (canonical-space units; metres for the
  default ``faceanything-mp478-v1`` space);
* ``pixel:FRAME:X:Y``: the canonical coordinate under pixel (X, Y) of capture frame FRAME
  (0-based capture index; pixel centres at whole numbers, as everywhere in the runtime);
* a template landmark name such as ``mouth_corner_L`` (already tracked by default; naming it
  only makes sure it is there);
* any of the first two behind ``NAME=`` to choose the point's name (default ``user_1``, ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UserError

MESH_MODES = ("template", "dense")
DENSITIES = ("low", "medium", "high")
DEFAULT_DENSITY = {"template": "high", "dense": "medium"}
FILTERS = ("savgol",)
DEFAULT_FILTER = "savgol"


@dataclass(frozen=True)
class PointRequest:
    """One extra point: exactly one of `canonical`, `pixel` (frame, x, y) or `landmark` is set."""

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


@dataclass
class ReconstructOptions:
    """Settings of `reconstruct` (all recorded in the reconstruction header).

    mesh:      "template" (the canonical template, subdivided) or "dense" (seeded on a reference
               frame's face pixels; needs no template).
    density:   template: low = the 478-vertex template, medium = one subdivision (~1.8k),
               high = two (~7k); dense: about 500, 2,000 or 8,000 vertices. None picks the
               mode's default: high for the template, medium (~2k) for dense.
    smooth:    "on" (the default filter), "off", or a filter name (see `FILTERS`).
    points:    extra points, `PointRequest`s or their written forms (see the module docstring).
    radius:    a vertex counts as seen in a frame when the frame's canonical map passes within
               this distance of its canonical coordinate (canonical units; 2 mm by default:
               a point accepted that far off is off by as much in space, so larger values
               trade accuracy for fewer filled vertices, and noisier canonical maps need them).
    reference_frame: capture index the dense mesh is seeded on (default: the first face frame).
    """

    mesh: str = "template"
    density: str | None = None
    smooth: str = "on"
    points: list = field(default_factory=list)
    radius: float = 0.002
    reference_frame: int | None = None

    def __post_init__(self) -> None:
        _check_choice("mesh", self.mesh, MESH_MODES)
        if self.density is None:
            self.density = DEFAULT_DENSITY[self.mesh]
        _check_choice("density", self.density, DENSITIES)
        _check_choice("smooth", self.smooth, ("on", "off") + FILTERS)
        if not self.radius > 0:
            raise UserError(f"radius must be positive, got {self.radius!r}", "Give a radius such as 0.002 (2 mm).", code="bad_option")
        self.points = parse_points(self.points)

    @property
    def filter(self) -> str | None:
        """The temporal filter to apply, or None when smoothing is off."""
        if self.smooth == "off":
            return None
        return DEFAULT_FILTER if self.smooth == "on" else self.smooth

    def settings(self) -> dict:
        """JSON-ready record of the options."""
        record = asdict(self)
        record["points"] = [point.text() for point in self.points]
        record["filter"] = self.filter
        return record


def parse_points(values) -> list[PointRequest]:
    """Point requests from CLI strings, request JSON values or `PointRequest`s (see module docstring).

    A single string may hold several requests separated by ``;``.
    """
    if values is None:
        return []
    if isinstance(values, (str, PointRequest)):
        values = [values]
    requests: list[PointRequest] = []
    for value in values:
        if isinstance(value, str):
            requests.extend(_parse_text(part.strip()) for part in value.split(";") if part.strip())
        else:
            requests.append(_parse_value(value))
    return requests


def _parse_value(value) -> PointRequest:
    if isinstance(value, PointRequest):
        return value
    if isinstance(value, (list, tuple)):
        return PointRequest(canonical=_coordinate(value, value))
    raise _point_error(value)


def _parse_text(text: str) -> PointRequest:
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
        return PointRequest(name=name, canonical=_coordinate(body.split(","), text))
    if name is None and body.replace("_", "").isalnum():
        return PointRequest(landmark=body)
    raise _point_error(text)


def _coordinate(parts, original) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        raise _point_error(original) from None
    if len(values) != 3:
        raise _point_error(original)
    return values


def _point_error(value) -> UserError:
    return UserError(
        f"cannot read the point request {value!r}",
        "Write a point as X,Y,Z (canonical coordinate), pixel:FRAME:X:Y, a landmark name such as "
        "mouth_corner_L, or NAME=X,Y,Z / NAME=pixel:FRAME:X:Y.",
        code="bad_option",
    )


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(
            f"{name} must be one of {', '.join(choices)}; got {value!r}",
            f"Choose --{name} {choices[0]} (or another of the choices above).",
            code="bad_option",
        )
