"""Speed and memory of capture and reconstruction (part of `make bench`).

Each measurement runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own:
the GRID clips from ../shared, 100 frames and a 3,000-frame clip made by repeating one of them
(memory must stay flat in clip length). Capture and reconstruction run on the same clip and sit
side by side with their ratio: reconstruction must run at least `RECONSTRUCT_OVER_CAPTURE` times
capture's frames/s, so that it is never the slow step. Reconstruction figures are the median of
`RUNS` runs.

Standalone: `python -m bench.speed` prints the table.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .paths import CACHE, GRID_DIR, REPO

LONG_CLIP_FRAMES = 3000
RUNS = 3
"""Reconstruction runs per figure (the median is reported)."""
RECONSTRUCT_OVER_CAPTURE = 1.5
"""Reconstruction frames/s over capture frames/s on the same clip that the product requires."""


def repeated_clip(source: Path, frames: int, target: Path) -> Path:
    """A clip of `frames` frames made by playing `source` forwards and backwards (no jump cuts)."""
    import av

    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cycle = images + images[-2:0:-1]
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(cycle[i % len(cycle)], format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    partial.rename(target)
    return target


def median_run(stage: str, clip: Path, frames: str | None, workdir: Path) -> dict:
    """`measure` `RUNS` times: the run with the median frames/s, with the highest peak of all.
    Single runs of a short clip vary by a tenth on a shared VM."""
    runs = sorted((measure(stage, clip, frames, workdir) for _ in range(RUNS)), key=lambda run: run["fps"])
    return runs[len(runs) // 2] | {"peak_mib": max(run["peak_mib"] for run in runs)}


def measure(stage: str, clip: Path, frames: str | None, workdir: Path) -> dict:
    """Run one stage in a subprocess; returns frames, seconds, frames/s and peak memory (MiB).
    Capture frames/s count from opening the footage (MediaPipe's graph start included) to the last
    frame written; importing MediaPipe, once per process, is reported apart."""
    command = [sys.executable, "-m", "bench.speed", "--measure", stage, str(clip), str(workdir), frames or "all"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{stage} benchmark on {clip.name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _measure_in_process(stage: str, clip: str, workdir: str, frames: str | None) -> dict:
    capture_dir = Path(workdir) / "capture"
    startup = 0.0
    if stage == "capture":
        from model_runtime.capture import CaptureOptions, run_capture

        shutil.rmtree(capture_dir, ignore_errors=True)
        started = time.perf_counter()
        import model_runtime.backends.mediapipe_dense  # noqa: F401 - MediaPipe's import, timed apart

        startup = time.perf_counter() - started
        started = time.perf_counter()
        summary = run_capture(clip, capture_dir, CaptureOptions(frames=frames))
        count, with_face = summary.frames, summary.frames_with_face
    else:
        from model_runtime.capture_folder import CaptureFolder
        from model_runtime.reconstruct import ReconstructOptions, reconstruct

        count = with_face = CaptureFolder(capture_dir).frame_count
        started = time.perf_counter()
        reconstruct(capture_dir, ReconstructOptions(mesh="template", density="high"))
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": count, "with_face": with_face, "seconds": round(seconds, 2), "startup": round(startup, 2),
            "fps": round(count / seconds, 1), "peak_mib": round(peak_mib)}


def clips() -> list[tuple[str, Path, str | None]]:
    grid = sorted(GRID_DIR.glob("*.mpg"))
    if not grid:
        return []
    long_clip = repeated_clip(grid[0], LONG_CLIP_FRAMES, CACHE / f"{grid[0].stem}_x{LONG_CLIP_FRAMES}.mp4")
    rows = [(f"GRID {path.stem} (75 frames)", path, None) for path in grid]
    rows.append((f"{grid[0].stem} repeated, 100 frames", long_clip, "0:100"))
    rows.append((f"{grid[0].stem} repeated, {LONG_CLIP_FRAMES} frames", long_clip, None))
    return rows


def run(report=None) -> str:
    """Measure every clip; returns (and adds to `report`) a markdown table."""
    selected = clips()
    if not selected:
        text = f"Skipped: the GRID clips are not in {GRID_DIR} (../shared beside the checkout)."
    else:
        lines = ["| clip | frames with a face | MediaPipe import (s) | capture frames/s | capture peak MiB "
                 "| reconstruct frames/s | reconstruct peak MiB | reconstruct / capture frames/s |",
                 "|---|---|---|---|---|---|---|---|"]
        ratios = []
        with tempfile.TemporaryDirectory(prefix="fa-bench-") as workdir:
            for label, clip, frames in selected:
                cap = measure("capture", clip, frames, Path(workdir))
                rec = median_run("reconstruct", clip, frames, Path(workdir))
                ratios.append(rec["fps"] / cap["fps"])
                lines.append(f"| {label} | {cap['with_face']}/{cap['frames']} | {cap['startup']} | {cap['fps']} "
                             f"| {cap['peak_mib']} | {rec['fps']} | {rec['peak_mib']} | {ratios[-1]:.2f}x |")
                print(lines[-1], flush=True)
        text = "\n".join(lines) + "\n\n" + verdict(ratios)
    if report is not None:
        report.section("Speed and memory (capture: MediaPipe backend; reconstruction: 8k-vertex template)",
                       text + "\n\nCapture frames/s run from opening the footage to the last frame written "
                       "(MediaPipe's graph start included); importing MediaPipe, once per runtime process, is the "
                       f"column before. Reconstruction frames/s (median of {RUNS} runs) run from the `reconstruct` "
                       "call to the finished folder, on the capture of the same clip made just before.")
    return text


def verdict(ratios: list[float]) -> str:
    """One sentence: does reconstruction keep RECONSTRUCT_OVER_CAPTURE times ahead of capture on every clip."""
    worst = min(ratios)
    word = "meets" if worst >= RECONSTRUCT_OVER_CAPTURE else "does NOT meet"
    return (f"Reconstruction {word} the requirement of at least {RECONSTRUCT_OVER_CAPTURE}x capture's frames/s "
            f"on the same clip: the lowest ratio is {worst:.2f}x.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        stage, clip, workdir, frames = sys.argv[2:6]
        print(json.dumps(_measure_in_process(stage, clip, workdir, None if frames == "all" else frames)))
    else:
        print(run())
