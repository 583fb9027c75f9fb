"""What the user chooses for a reconstruction: the reconstruct options of `option_schema.py`,
declared there once, with the defaults that depend on other options resolved here."""
from __future__ import annotations

from dataclasses import asdict

from ..option_schema import RECONSTRUCT, PointRequest, options_class, parse_point

DEFAULT_DENSITY = {"template": "high", "dense": "medium"}
DEFAULT_FILTER = "savgol"


class ReconstructOptions(options_class(RECONSTRUCT, "ReconstructOptions")):
    """Settings of `reconstruct`, validated by the schema when made (all recorded in the header).

    After validation `density` is the mode's own default when "auto" was asked for, and `points`
    holds `PointRequest`s (their written forms are recorded).
    """

    def __post_init__(self) -> None:
        if isinstance(self.points, (list, tuple)):
            self.points = [point.text() if isinstance(point, PointRequest) else point for point in self.points]
        super().__post_init__()
        if self.density == "auto":
            self.density = DEFAULT_DENSITY[self.mesh]
        self.points = [parse_point(text) for text in self.points]

    @property
    def filter(self) -> str | None:
        """The temporal filter to apply, or None when smoothing is off."""
        return None if self.smooth == "off" else DEFAULT_FILTER

    def settings(self) -> dict:
        """JSON-ready record of the options."""
        record = asdict(self)
        record["points"] = [point.text() for point in self.points]
        record["filter"] = self.filter
        return record


def parse_points(values) -> list[PointRequest]:
    """Point requests from their written forms (see `option_schema.PointRequest`)."""
    return ReconstructOptions(points=values or []).points
