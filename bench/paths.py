"""Where the benchmarks find things: the checkout, its bench cache, and ../shared beside it."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / "cache"
SHARED = REPO.parent / "shared"
GRID_DIR = SHARED / "media" / "grid"
