"""Speed and memory of capture and reconstruction (part of `make bench`).

Each measurement runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own:
the GRID clips from ../shared, 100 frames and a 3,000-frame clip made by repeating one of them
(memory must stay flat in clip length). Capture and reconstruction run on the same clip and sit
side by side with their ratio: reconstruction must run at least `RECONSTRUCT_OVER_CAPTURE` times
capture's frames/s, so that it is never the slow step. Reconstruction figures are the median of
`RUNS` runs.

The default path against Face Mesh (issue 12's speed target): on each GRID clip, side by side in
one run, the wall time of whole processes as the command line runs them: decoding plus MediaPipe
Face Mesh alone (video mode, nothing else), and `capture` then `reconstruct` with the appearance
stage on (the default) and off; the median of `RUNS` rounds, the processes of one round run one
after another. The default path must reach `DEFAULT_PATH_OVER_FACE_MESH` times the frames/s of
Face Mesh alone. Where a frame's time goes, per stage, comes from timers around the stages
(`stage_costs`) in one process.

Standalone: `python -m bench.speed` prints the tables; `python -m bench.speed --default-path
[CLIP ...]` only the second and the stages.
"""
from __future__ import annotations

import functools
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from .paths import CACHE, GRID_DIR, REPO

LONG_CLIP_FRAMES = 3000
RUNS = 3
"""Reconstruction runs per figure (the median is reported)."""
RECONSTRUCT_OVER_CAPTURE = 1.5
"""Reconstruction frames/s over capture frames/s on the same clip that the product requires."""
DEFAULT_PATH_OVER_FACE_MESH = 0.33
"""The default path's frames/s (capture + reconstruct) over decode + Face Mesh alone's (issue 12)."""


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
    grid = sorted(GRID_DIR.glob("*.mpg"))
    if grid:
        path_text = default_path_table(grid) + "\n\n" + stage_table(grid[0])
        text += "\n\n" + path_text
        if report is not None:
            report.section("Speed: the default path against decoding plus Face Mesh alone",
                           path_text + "\n\nWhole processes, wall time from start to exit, as the command line "
                           "runs them (`python -m model_runtime capture CLIP -o DIR`, then `reconstruct DIR`; "
                           f"median of {RUNS} rounds); Face Mesh alone is `python -m bench.speed --face-mesh-alone "
                           "CLIP` (MediaPipe imported as the backend does, the clip decoded, Face Mesh in video mode on every frame).")
    return text


def verdict(ratios: list[float]) -> str:
    """One sentence: does reconstruction keep RECONSTRUCT_OVER_CAPTURE times ahead of capture on every clip."""
    worst = min(ratios)
    word = "meets" if worst >= RECONSTRUCT_OVER_CAPTURE else "does NOT meet"
    return (f"Reconstruction {word} the requirement of at least {RECONSTRUCT_OVER_CAPTURE}x capture's frames/s "
            f"on the same clip: the lowest ratio is {worst:.2f}x.")


def face_mesh_alone(clip: str) -> int:
    """Decode `clip` and run Face Mesh (video mode, refined landmarks) on every frame; the frame count.

    MediaPipe is imported as the backend imports it (without the other solutions' drawing
    utilities and matplotlib), so the runtime's leaner start is not counted as its own speed."""
    import av

    from model_runtime.backends.mediapipe_dense import face_mesh

    count = 0
    with face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=True) as mesh, av.open(clip) as video:
        for frame in video.decode(video=0):
            mesh.process(frame.to_ndarray(format="rgb24"))
            count += 1
    return count


def _timed_process(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def default_path_round(clip: Path, workdir: Path) -> dict[str, float]:
    """Seconds of each whole process on `clip`, one after another: Face Mesh alone, then capture
    and reconstruct with the appearance stage on and off."""
    python = sys.executable
    seconds = {"face mesh": _timed_process([python, "-m", "bench.speed", "--face-mesh-alone", str(clip)])}
    for stage, flag in (("on", "--appearance"), ("off", "--no-appearance")):
        folder = workdir / f"stage-{stage}"
        shutil.rmtree(folder, ignore_errors=True)
        seconds[f"capture {stage}"] = _timed_process([python, "-m", "model_runtime", "capture", str(clip), "-o",
                                                      str(folder), flag])
        seconds[f"reconstruct {stage}"] = _timed_process([python, "-m", "model_runtime", "reconstruct", str(folder)])
    return seconds


def default_path_table(grid: list[Path]) -> str:
    """Markdown: per clip, the median of `RUNS` rounds of `default_path_round` in seconds, and the
    default path's frames/s over Face Mesh alone's, stage on and off."""
    lines = ["| clip | frames | decode + Face Mesh alone (s) | stage on: capture + reconstruct (s) | on / alone "
             "frames/s | stage off: capture + reconstruct (s) | off / alone frames/s |", "|---|---|---|---|---|---|---|"]
    worst = []
    with tempfile.TemporaryDirectory(prefix="fa-bench-") as workdir:
        for clip in grid:
            rounds = [default_path_round(clip, Path(workdir)) for _ in range(RUNS)]
            median = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
            alone = median["face mesh"]
            cells = []
            for stage in ("on", "off"):
                capture, rebuild = median[f"capture {stage}"], median[f"reconstruct {stage}"]
                cells.append(f"{capture:.2f} + {rebuild:.2f} = {capture + rebuild:.2f} | {alone / (capture + rebuild):.2f}x")
            worst.append(alone / (median["capture on"] + median["reconstruct on"]))
            frames = _frame_count(clip)
            lines.append(f"| {clip.stem} | {frames} | {alone:.2f} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    word = "meets" if min(worst) >= DEFAULT_PATH_OVER_FACE_MESH else "does NOT meet"
    return "\n".join(lines) + (f"\n\nThe default path (stage on) {word} the target of {DEFAULT_PATH_OVER_FACE_MESH}x "
                               f"Face Mesh alone's frames/s: the lowest ratio is {min(worst):.2f}x.")


def _frame_count(clip: Path) -> int:
    import av

    with av.open(str(clip)) as video:
        return sum(1 for _ in video.decode(video=0))


CAPTURE_STAGES = ("decode", "Face Mesh", "appearance stage", "dense maps", "write (overlapped)")
RECONSTRUCT_STAGES = ("track", "fill + smooth", "write vertices", "expression curves", "write files")


def stage_costs(clip: str, workdir: str) -> dict[str, float]:
    """ms a frame of each stage of capture (stage on) and reconstruction of `clip`, timed in this
    process by wrappers around the functions that do them; "other" is what no wrapper covers."""
    started = time.perf_counter()
    from model_runtime import capture
    from model_runtime.appearance import AppearanceTracker
    from model_runtime.backends import mediapipe_dense

    imports = time.perf_counter() - started
    spent: dict[str, float] = defaultdict(float)
    _time_calls(mediapipe_dense.MediaPipeDenseBackend, "predict", spent, "predict")
    _time_calls(AppearanceTracker, "update", spent, "appearance stage")
    _time_calls(mediapipe_dense, "dense_maps", spent, "dense maps")
    _time_calls(capture, "write_frame", spent, "write (overlapped)")
    source_frames = capture._source_frames

    def timed_frames(*args):
        frames = iter(source_frames(*args))
        while True:
            begun = time.perf_counter()
            frame = next(frames, None)
            spent["decode"] += time.perf_counter() - begun
            if frame is None:
                return
            yield frame

    capture._source_frames = timed_frames
    folder = Path(workdir) / "stages"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    count = capture.run_capture(clip, folder, capture.CaptureOptions()).frames
    capture_total = time.perf_counter() - started
    spent["Face Mesh"] = spent.pop("predict") - spent["appearance stage"] - spent["dense maps"]
    result = {"capture: import": 1000 * imports / count}
    result |= {f"capture: {name}": 1000 * spent[name] / count for name in CAPTURE_STAGES}
    covered = sum(spent[name] for name in CAPTURE_STAGES if "overlapped" not in name)
    result["capture: other"] = 1000 * (capture_total - covered) / count
    spent.clear()
    started = time.perf_counter()
    from model_runtime.reconstruct import ReconstructOptions, pipeline, reconstruct

    imports = time.perf_counter() - started
    for function, name in (("track_clip", "track"), ("_complete_tracks", "fill + smooth"),
                           ("_write_vertices", "write vertices"), ("solve_capture", "expression curves"),
                           ("write_reconstruction_files", "write files")):
        _time_calls(pipeline, function, spent, name)
    started = time.perf_counter()
    reconstruct(folder, ReconstructOptions())
    total = time.perf_counter() - started
    result["reconstruct: import"] = 1000 * imports / count
    result |= {f"reconstruct: {name}": 1000 * spent[name] / count for name in RECONSTRUCT_STAGES}
    result["reconstruct: other"] = 1000 * (total - sum(spent.values())) / count
    return result


def _time_calls(owner, name: str, spent: dict, label: str) -> None:
    """Replace `owner.name` by a wrapper adding its calls' seconds to `spent[label]`."""
    function = getattr(owner, name)
    lock = threading.Lock()

    @functools.wraps(function)
    def timed(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            with lock:
                spent[label] += time.perf_counter() - begun

    setattr(owner, name, timed)


def stage_table(clip: Path) -> str:
    """Markdown: `stage_costs` of `clip` (in a fresh process) as one row per stage."""
    with tempfile.TemporaryDirectory(prefix="fa-bench-") as workdir:
        command = [sys.executable, "-m", "bench.speed", "--stages", str(clip), workdir]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"stage timing on {clip.name} failed:\n{result.stderr[-2000:]}")
    costs = json.loads(result.stdout.strip().splitlines()[-1])
    rows = [f"| {name} | {ms:.1f} |" for name, ms in costs.items()]
    return (f"Where the time goes on {clip.stem} (stage on; ms a frame, one process, imports spread over the "
            f"frames):\n\n| stage | ms a frame |\n|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        stage, clip, workdir, frames = sys.argv[2:6]
        print(json.dumps(_measure_in_process(stage, clip, workdir, None if frames == "all" else frames)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--face-mesh-alone":
        print(face_mesh_alone(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--stages":
        print(json.dumps({name: round(ms, 2) for name, ms in stage_costs(sys.argv[2], sys.argv[3]).items()}))
    elif len(sys.argv) > 1 and sys.argv[1] == "--default-path":
        chosen = [Path(arg) for arg in sys.argv[2:]] or sorted(GRID_DIR.glob("*.mpg"))
        print(default_path_table(chosen))
        print()
        print(stage_table(chosen[0]))
    else:
        print(run())
