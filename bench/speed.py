"""Speed and memory of capture and reconstruction (part of `make bench`).

Each measurement runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own:
the GRID clips from ../shared, 100 frames and a 3,000-frame clip made by repeating one of them
(memory must stay flat in clip length). Reconstruction runs as it chooses (frames read ahead in a
reader process here), with the tracker's and the reader's peaks, and with the reader in a thread
for comparison; each figure is the median of `RUNS` runs.

Standalone: `python -m model_runtime.bench.speed` prints the tables.
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


def median_run(stage: str, clip: Path, frames: str | None, workdir: Path, reader: str | None = None) -> dict:
    """`measure` `RUNS` times: the run with the median frames/s, with the highest peaks of all.
    Single runs of a short clip vary by a tenth on a shared VM."""
    runs = sorted((measure(stage, clip, frames, workdir, reader) for _ in range(RUNS)), key=lambda run: run["fps"])
    return runs[len(runs) // 2] | {key: max(run[key] for run in runs) for key in ("peak_mib", "reader_peak_mib")}


def measure(stage: str, clip: Path, frames: str | None, workdir: Path, reader: str | None = None) -> dict:
    """Run one stage in a subprocess; returns frames, seconds, frames/s and peak memory (MiB).
    Capture frames/s count from opening the footage (MediaPipe's graph start included) to the last
    frame written; importing MediaPipe, once per process, is reported apart."""
    command = [sys.executable, "-m", "model_runtime.bench.speed", "--measure", stage, str(clip), str(workdir), frames or "all", reader or "auto"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{stage} benchmark on {clip.name} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _measure_in_process(stage: str, clip: str, workdir: str, frames: str | None, reader: str | None) -> dict:
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
        from model_runtime.reconstruct.reading import reader_kind

        count = with_face = CaptureFolder(capture_dir).frame_count
        reader = reader or reader_kind(count)
        started = time.perf_counter()
        reconstruct(capture_dir, ReconstructOptions(mesh="template", density="high"), reader=reader)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reader_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the reader process, gone by now
    return {"frames": count, "with_face": with_face, "seconds": round(seconds, 2), "startup": round(startup, 2),
            "fps": round(count / seconds, 1), "peak_mib": round(peak_mib), "reader": reader,
            "reader_peak_mib": round(reader_peak_mib) if reader not in (None, "thread") else 0}


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
                 "| reconstruct frames/s | reconstruct peak MiB (tracker + reader) | reconstruct frames/s, reader in a thread |",
                 "|---|---|---|---|---|---|---|---|"]
        with tempfile.TemporaryDirectory(prefix="fa-bench-") as workdir:
            for label, clip, frames in selected:
                cap = measure("capture", clip, frames, Path(workdir))
                rec = median_run("reconstruct", clip, frames, Path(workdir))
                threaded = median_run("reconstruct", clip, frames, Path(workdir), reader="thread")
                lines.append(f"| {label} | {cap['with_face']}/{cap['frames']} | {cap['startup']} | {cap['fps']} "
                             f"| {cap['peak_mib']} | {rec['fps']} ({rec['reader']} reader) | {rec['peak_mib']} + {rec['reader_peak_mib']} "
                             f"| {threaded['fps']} |")
                print(lines[-1], flush=True)
        text = "\n".join(lines)
    if report is not None:
        report.section("Speed and memory (capture: MediaPipe backend; reconstruction: 8k-vertex template)",
                       text + "\n\nCapture frames/s run from opening the footage to the last frame written (MediaPipe's "
                       "graph start included); importing MediaPipe, once per runtime process, is the column before. "
                       f"Reconstruction frames/s (median of {RUNS} runs) run from the call to the finished folder; frames are read ahead of the "
                       "tracker in a reader process (`model_runtime/reconstruct/reading.py`), and the last column "
                       "reads them in a thread instead. The reader's peak counts the pages it shares with the tracker "
                       "after the fork.")
    return text


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        stage, clip, workdir, frames, reader = sys.argv[2:7]
        print(json.dumps(_measure_in_process(stage, clip, workdir, None if frames == "all" else frames, None if reader == "auto" else reader)))
    else:
        print(run())
