"""The measurements behind the reconstruction's defaults (part of `make bench`).

    .venv-runtime/bin/python -m bench.reconstruction

1. Smoothing. Each candidate filter is applied to unsmoothed reconstructions of the GRID clips
   (captured with the default backend) and of a synthetic clip with fast head turns and jaw
   drops. Reported: jitter, the mean norm of the second difference in time, of the vertices (mm)
   and of the named points' pixels; how far the visible named points land from MediaPipe's own
   landmarks (mean, 99th percentile, max; blinks are the largest); and on the synthetic clip the
   mean and max distance to the ground truth (lag and overshoot show there).
2. Cost per frame, CPU milliseconds by stage on a GRID capture, one stage at a time: reading a
   frame file (npz, zlib), indexing its face pixels, the canonical look-up of every vertex (each
   guessed at its pixel of the frame before) and the head pose (fitted per frame here;
   `reconstruct` fits a batch of frames at once, so this is an upper bound).

`run(report)` adds both tables to a `bench.report.Report` when given one.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from model_runtime.capture_folder import CaptureFolder
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruct.mesh import rigid_vertices, template_mesh
from model_runtime.reconstruct.pipeline import project
from model_runtime.reconstruct.pose import fit_head_pose
from model_runtime.reconstruct.tracking import CanonicalLookup
from model_runtime.reconstruction_format import load_reconstruction
from model_runtime.template import load_template
from tests.fixtures.synthetic import SyntheticClip, write_capture

from .paths import GRID_DIR
from .report import markdown_table

FPS = 25.0
FAST = SyntheticClip(frame_count=60, yaw=30.0, pitch=10.0, shift=0.03, jaw_drop=0.015, period=25.0)
"""Peak speeds: head turn 150 deg/s, jaw 15 mm in 0.24 s."""


def one_euro_both_ways(values: np.ndarray, min_cutoff: float = 3.0, beta: float = 100.0) -> np.ndarray:
    """The One Euro filter (Casiez et al. 2012) run forwards and backwards and averaged, so that
    its lag cancels (a candidate only; `beta` in 1 / metre for positions in metres)."""

    def alpha(cutoff):
        rate = 2 * np.pi * cutoff / FPS
        return rate / (rate + 1)

    def forwards(x):
        out = np.empty_like(x)
        out[0] = x[0]
        speed = np.zeros_like(x[0])
        for t in range(1, len(x)):
            speed += alpha(1.0) * ((x[t] - out[t - 1]) * FPS - speed)
            out[t] = out[t - 1] + alpha(min_cutoff + beta * np.abs(speed)) * (x[t] - out[t - 1])
        return out

    return 0.5 * (forwards(values) + forwards(values[::-1])[::-1])


CANDIDATES = {
    "off": lambda x: x,
    "Savitzky-Golay cubic, 5 frames (0.2 s, default)": lambda x: savgol_filter(x, 5, 3, axis=0, mode="interp"),
    "Savitzky-Golay cubic, 7 frames (0.28 s)": lambda x: savgol_filter(x, 7, 3, axis=0, mode="interp"),
    "Savitzky-Golay cubic, 9 frames (0.36 s)": lambda x: savgol_filter(x, 9, 3, axis=0, mode="interp"),
    "Gaussian, sigma 1 frame": lambda x: gaussian_filter1d(x, 1.0, axis=0, mode="nearest"),
    "One Euro both ways (3 Hz, beta 100)": one_euro_both_ways,
}


def jitter(values: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(values, n=2, axis=0), axis=-1).mean())


def smoothing_table(grid_captures: list[Path], workdir: Path) -> str:
    template = load_template()
    clips = []
    for folder in grid_captures:
        recon = _load(reconstruct(folder, ReconstructOptions(smooth="off")))
        capture = CaptureFolder(folder)
        landmarks = np.stack([capture.frame(t).landmarks2d for t in range(capture.frame_count)])
        clips.append((recon, landmarks[:, [template.landmarks[name] for name in recon.point_names]]))
    fast = _load(reconstruct(write_capture(workdir / "fast", FAST), ReconstructOptions(density="medium", smooth="off"), template=FAST.template))
    truth = np.stack([FAST.true_positions(fast.canonical_vertices.astype(np.float64), t) for t in range(FAST.frame_count)])
    rows = []
    for name, smooth in CANDIDATES.items():
        vertex_jitter, pixel_jitter, errors = [], [], []
        for recon, landmarks in clips:
            pixels = project(smooth(recon.point_positions.astype(np.float64)), recon.intrinsics)
            vertex_jitter.append(jitter(smooth(recon.vertices.astype(np.float64))) * 1e3)
            pixel_jitter.append(jitter(pixels))
            errors.append(np.linalg.norm(pixels - landmarks, axis=-1)[recon.point_visible])
        errors = np.concatenate(errors)
        fast_error = np.linalg.norm(smooth(fast.vertices.astype(np.float64)) - truth, axis=-1) * 1e3
        rows.append([name, f"{np.mean(vertex_jitter):.2f}", f"{np.mean(pixel_jitter):.3f}", f"{errors.mean():.2f}",
                     f"{np.percentile(errors, 99):.2f}", f"{errors.max():.2f}", f"{fast_error.mean():.3f}", f"{fast_error.max():.2f}"])
    header = ["filter", "vertex jitter (mm)", "point jitter (px)", "to landmarks mean (px)", "p99 (px)", "max (px)",
              "fast synthetic: mean error (mm)", "max (mm)"]
    return markdown_table(header, rows)


def stage_costs(folder: Path, frames: int = 75) -> str:
    """CPU milliseconds per frame by stage, one stage at a time, high-density template mesh."""
    template = load_template()
    mesh = template_mesh(template, "high")
    rigid = rigid_vertices(mesh, template)
    capture = CaptureFolder(folder)
    frames = min(frames, capture.frame_count)
    radius = ReconstructOptions().radius
    names = ("read frame file", "index face pixels (fit sums)", f"look up {mesh.vertex_count} vertices (tree included)",
             "head pose (one frame's fit)")
    spent = dict.fromkeys(names, 0.0)
    guess = np.full((mesh.vertex_count, 2), np.nan)
    for index in range(frames):
        clock = time.process_time()
        maps = capture.frame(index, optional=False)
        spent[names[0]] += time.process_time() - clock
        clock = time.process_time()
        lookup = CanonicalLookup(maps)
        spent[names[1]] += time.process_time() - clock
        clock = time.process_time()
        track = lookup.track(mesh.canonical, radius, guess)
        guess = np.where(track.seen[:, None], track.pixels, np.nan)
        spent[names[2]] += time.process_time() - clock
        clock = time.process_time()
        fit_head_pose(mesh.canonical[rigid], track.positions[rigid], track.confidence[rigid])
        spent[names[3]] += time.process_time() - clock
    rows = [[name, f"{seconds / frames * 1e3:.2f}"] for name, seconds in spent.items()]
    rows.append(["total", f"{sum(spent.values()) / frames * 1e3:.2f}"])
    return markdown_table(["stage", "CPU ms per frame"], rows)


def run(report=None) -> str:
    clips = sorted(GRID_DIR.glob("*.mpg"))
    if not clips:
        text = f"Skipped: the GRID clips are not in {GRID_DIR} (../shared beside the checkout)."
    else:
        from model_runtime.capture import CaptureOptions, run_capture

        with tempfile.TemporaryDirectory(prefix="fa-recon-bench-") as workdir:
            captures = []
            for clip in clips:
                run_capture(clip, Path(workdir) / clip.stem, CaptureOptions())
                captures.append(Path(workdir) / clip.stem)
            text = (
                "### Smoothing candidates (GRID clips; synthetic fast motion)\n\n" + smoothing_table(captures, Path(workdir))
                + "\n\n### Cost per frame (" + clips[0].stem + ", 8k-vertex template)\n\n" + stage_costs(captures[0])
            )
    if report is not None:
        report.section("Reconstruction: smoothing and cost per frame", text)
    return text


def _load(folder: Path):
    return load_reconstruction(folder, memory_map=False)


if __name__ == "__main__":
    print(run())
