"""Speed and memory of the Face Anything predictor on the CPU (part of `make bench`).

The small structure with random weights (the released giant network is not shipped and needs a
GPU), written as a checkpoint in the release's layout and converted to fp16 safetensors
(tests/fixtures/network_weights.py), so the numbers include the real load path, preprocessing,
ray solving and resizing to the frame.
Frames are 640x480; each measurement runs in a fresh subprocess so its peak resident memory
(ru_maxrss) is its own. GPU figures are not measured here.

Standalone: `python -m bench.network` prints the table.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.fixtures.network_weights import write_random_weights

from .paths import REPO

RESOLUTIONS = (252, 504)
MODES = ("window", "single")
FRAMES = 4
FRAME_SIZE = (640, 480)


def run_benchmark(resolutions=RESOLUTIONS, modes=MODES, frames: int = FRAMES) -> list[dict]:
    """Measure every (resolution, mode), print a markdown table and return the rows."""
    with tempfile.TemporaryDirectory() as folder:
        weights = write_random_weights(Path(folder))
        rows = [measure(weights, resolution, mode, frames) for resolution in resolutions for mode in modes]
    print(markdown_table(rows))
    return rows


def measure(weights: Path, resolution: int, mode: str, frames: int) -> dict:
    command = [sys.executable, "-m", "bench.network", "--measure"]
    command += [str(weights), str(resolution), mode, str(frames)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"network benchmark at {resolution} ({mode}) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| network | device | input | mode | frames | s | frames/s | RSS after load (MiB) | peak RSS (MiB) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['network']} | {row['device']} | {row['input']} | {row['mode']} | {row['frames']} | "
            f"{row['seconds']:.2f} | {row['frames_per_second']:.2f} | "
            f"{row['rss_loaded_mib']:.0f} | {row['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def _measure_here(weights: Path, resolution: int, mode: str, frames: int) -> dict:
    from model_runtime.backends.faceanything import FaceAnythingBackend, network_input_size

    predictor = FaceAnythingBackend(
        weights, size="small", device="cpu", resolution=resolution, mode=mode, window=frames, overlap=0,
        align_to_template=False,
    )
    clip = _clip(frames)
    list(predictor.predict_frames(iter(clip[:1]), None))  # warm-up: first-call allocations
    rss_loaded = _current_rss_mib()
    start = time.perf_counter()
    count = sum(1 for _ in predictor.predict_frames(iter(clip), None))
    seconds = time.perf_counter() - start
    width, height = network_input_size(*FRAME_SIZE, resolution)
    return {
        "network": "small (random weights, fp16 file)",
        "device": "cpu",
        "input": f"{width}x{height}",
        "mode": mode if mode == "single" else f"window of {frames}",
        "frames": count,
        "seconds": seconds,
        "frames_per_second": count / seconds,
        "rss_loaded_mib": rss_loaded,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _clip(frames: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    width, height = FRAME_SIZE
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--measure":
        print(json.dumps(_measure_here(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))))
    else:
        run_benchmark()
