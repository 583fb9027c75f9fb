"""Accuracy against exact ground truth, our pipeline side by side with raw MediaPipe landmarks.

For every clip of the suite (sequences.SUITE), rendered once into bench/cache/sequences/ by
render_gt.py through Blender's Python:

1. capture the frames (backend "mediapipe", and "faceanything" where FACEANYTHING_CHECKPOINT
   names a checkpoint) with the true focal length, and time it;
2. seed points on frame 0: face-skin pixels (ground truth) at least SEED_MARGIN_PX from the
   skin's edge, inside the face mask of every backend and inside the hull of MediaPipe's
   landmarks (so both methods can follow every seed);
3. ours: reconstruct with the seeds requested as ``pixel:0:X:Y`` points, and read their tracked
   pixels and camera positions from points.npz (smoothing off, then on);
4. the baseline, what a landmark-keying add-on does: each seed is tied to the MediaPipe landmark
   triangle that holds it on frame 0 (barycentric weights; the nearest landmark when no
   triangle does) and carried with the raw landmarks of every frame (2D and 3D);
5. the truth: the surface point under each seed pixel on frame 0, followed through the posed
   mesh (groundtruth.RenderedSequence.surface_tracks);
6. score both with metrics.py, plus depth (capture maps, reconstructed mesh, landmark mesh) and
   the per-vertex 3D error of the reconstructed mesh and of the landmark mesh.

The GRID clips (real, static camera, no ground truth) get the jitter part only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import binary_erosion

from model_runtime.capture_folder import CaptureFolder
from model_runtime.contract import CANONICAL_SPACE_ID
from model_runtime.raster import rasterize
from model_runtime.reconstruction_format import load_reconstruction, reconstruction_dir
from model_runtime.template import load_template
from . import metrics
from .groundtruth import RenderedSequence, project, visible_points
from .paths import CACHE, GRID_DIR, REPO
from .sequences import SUITE, SURFACE_FACE, make_sequence

BLENDER_PYTHON = REPO / ".venv-blender" / "bin" / "python"
FACEANYTHING_ENV = "FACEANYTHING_CHECKPOINT"
BASELINE = "MediaPipe landmarks"
SEED_MARGIN_PX = 3
# A track fails when it is this fraction of the frame width off (8 px at 384 px).
SURVIVAL_THRESHOLD = 1 / 48


@dataclass
class Settings:
    frame_count: int = 60
    image_size: int = 384
    samples: int = 16
    seed_points: int = 300
    suite: tuple = SUITE
    grid_clips: bool = True

    @property
    def survival_threshold_px(self) -> float:
        return SURVIVAL_THRESHOLD * self.image_size


@dataclass
class Tracks:
    """One method's tracks of the seeds: pixels (T, N, 2) and camera positions (T, N, 3), NaN
    where the method has none."""

    pixels: np.ndarray
    positions: np.ndarray | None


@dataclass
class TrackScores:
    epe_mean: float
    epe_median: float
    epe_per_frame: np.ndarray  # (T,)
    by_motion: list
    survival: float
    coverage: float  # share of the visible (frame, seed) pairs the method gave a position for
    jitter: float
    jitter_of_error: float
    error_3d_mm: float | None
    error_3d_shape_mm: float | None = None  # after a similarity alignment (metrics.aligned_point_errors)


@dataclass
class MeshErrors:
    """Per-vertex 3D error of a tracked mesh (mean over frames, NaN where not anchored)."""

    canonical: np.ndarray  # (V, 3) the mesh in its canonical space (for drawing)
    triangles: np.ndarray
    vertex_error_mm: np.ndarray  # (V,)
    mean_mm: float


@dataclass
class SequenceResult:
    name: str
    backend: str
    frames: int
    seeds: int
    timings: dict  # stage -> (frames, seconds)
    truth_jitter: float
    scores: dict  # method label -> TrackScores
    depth: dict  # label -> {"scaled": DepthErrors, "raw": DepthErrors, "coverage": float}
    meshes: dict  # method label -> MeshErrors


@dataclass
class JitterResult:
    clip: str
    seeds: int
    jitter: dict  # label -> px / frame^2


def backends() -> list[str]:
    """mediapipe, plus faceanything when a checkpoint is configured."""
    return ["mediapipe"] + (["faceanything"] if os.environ.get(FACEANYTHING_ENV) else [])


def ours(backend: str, smooth: bool = True) -> str:
    return f"ours ({backend}{'' if smooth else ', smoothing off'})"


# ----------------------------------------------------------------------------- rendering


def rendered_sequence(style: str, seed: int, settings: Settings, cache: Path = CACHE) -> tuple[RenderedSequence, float]:
    """The rendered clip from the cache, rendering it first when missing or stale.
    Returns it and the seconds per frame the render took."""
    spec = make_sequence(style, seed, settings.frame_count, settings.image_size)
    folder = cache / "sequences" / f"{spec.name}-{settings.image_size}px-{settings.frame_count}f-{settings.samples}spp"
    done = folder / "done.json"
    if not done.is_file() or json.loads(done.read_text())["fingerprint"] != spec.fingerprint():
        _render(style, seed, settings, folder, cache)
    return RenderedSequence(folder), float(json.loads(done.read_text())["seconds_per_frame"])


def _render(style: str, seed: int, settings: Settings, folder: Path, cache: Path) -> None:
    if not BLENDER_PYTHON.is_file():
        raise RuntimeError(f"{BLENDER_PYTHON} is missing: run `make blender` to set up Blender's Python (bpy)")
    shutil.rmtree(folder, ignore_errors=True)
    command = [str(BLENDER_PYTHON), "-m", "bench.render_gt", "--out", str(folder), "--style", style,
               "--seed", str(seed), "--frames", str(settings.frame_count), "--size", str(settings.image_size),
               "--samples", str(settings.samples)]
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(cache / "blender-user"))
    print(f"rendering {style}-{seed} ({settings.frame_count} frames, {settings.image_size} px)...", flush=True)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rendering {style}-{seed} failed:\n{result.stderr[-3000:]}")


# ----------------------------------------------------------------------------- the pipeline


def capture(source: Path, folder: Path, backend: str, focal_px: float | None,
            appearance: bool = True) -> tuple[CaptureFolder, float]:
    """A fresh capture of `source` (`appearance` False: MediaPipe's landmarks as they are, the
    baseline); returns it and the seconds it took."""
    from model_runtime.capture import CaptureOptions, run_capture

    options = CaptureOptions(focal=f"{focal_px:g}px" if focal_px else None, backend=backend, overwrite=True,
                             appearance=appearance,
                             checkpoint=os.environ.get(FACEANYTHING_ENV) if backend == "faceanything" else None)
    started = time.perf_counter()
    run_capture(source, folder, options)
    return CaptureFolder(folder), time.perf_counter() - started


def reconstruct_seeds(capture_folder: CaptureFolder, seeds: np.ndarray, smooth: bool) -> tuple[Tracks, object, float]:
    """Reconstruct with the default options and every seed requested as a pixel of frame 0 (the
    template mesh where the capture is in the template's canonical space, else the dense mesh);
    returns the seeds' tracks, the reconstruction (loaded into memory) and the seconds it took."""
    from model_runtime.reconstruct import PointRequest, ReconstructOptions, reconstruct

    names = [f"seed_{i:04d}" for i in range(len(seeds))]
    first = capture_folder.frame_numbers[0]  # seeds are picked on the first captured frame
    requests = [PointRequest(name=name, pixel=(first, float(x), float(y))) for name, (x, y) in zip(names, seeds)]
    mesh = "template" if capture_folder.canonical_space == CANONICAL_SPACE_ID else "dense"
    started = time.perf_counter()
    reconstruct(capture_folder.path, ReconstructOptions(mesh=mesh, points=requests, smooth="on" if smooth else "off"))
    seconds = time.perf_counter() - started
    result = load_reconstruction(reconstruction_dir(capture_folder.path), memory_map=False)
    index = [result.point_names.index(name) for name in names]
    tracks = Tracks(result.point_pixels[:, index].astype(np.float64),
                    result.point_positions[:, index].astype(np.float64))
    return tracks, result, seconds


def landmarks(capture_folder: CaptureFolder) -> tuple[np.ndarray, np.ndarray]:
    """Raw MediaPipe landmarks of every frame: (T, 478, 2) pixels and (T, 478, 3) camera
    positions, NaN on frames without a face."""
    pixels, positions = [], []
    for index in range(capture_folder.frame_count):
        maps = capture_folder.frame(index)
        has = maps.has_face and maps.landmarks2d is not None
        pixels.append(maps.landmarks2d if has else np.full((478, 2), np.nan))
        has3d = has and maps.landmarks3d is not None
        positions.append(maps.landmarks3d if has3d else np.full((478, 3), np.nan))
    return np.asarray(pixels, np.float64), np.asarray(positions, np.float64)


# ----------------------------------------------------------------------------- seeds and the baseline


def hull_mask(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixel centres inside the convex hull of `points` (N, 2)."""
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, shift=4)
    return mask.astype(bool)


def choose_seeds(skin: np.ndarray, allowed: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(N, 2) integer pixel (x, y) positions: up to `count` drawn at random from the `skin`
    pixels at least SEED_MARGIN_PX from its edge that are also `allowed`."""
    inner = binary_erosion(skin, iterations=SEED_MARGIN_PX) & allowed
    rows, cols = np.nonzero(inner)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    return np.stack([cols[chosen], rows[chosen]], axis=1)


def anchor_to_mesh(points: np.ndarray, vertices2d: np.ndarray, triangles: np.ndarray,
                   depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tie 2D points to a 2D mesh: for each point the (3,) vertex ids and barycentric weights
    of the triangle holding it (the nearest to the camera by mean `depth` where several do), or
    its nearest vertex with weight 1 when none does."""
    corners = vertices2d[triangles]  # (F, 3, 2)
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    usable = np.abs(area) > 1e-9
    order = np.zeros(len(triangles)) if depth is None else depth[triangles].mean(axis=1)
    ids = np.zeros((len(points), 3), np.int64)
    weights = np.zeros((len(points), 3))
    for n, (px, py) in enumerate(points):
        wb = ((px - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (py - a[:, 1])) / np.where(usable, area, 1)
        wc = ((b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (px - a[:, 0]) * (b[:, 1] - a[:, 1])) / np.where(usable, area, 1)
        inside = usable & (wb >= 0) & (wc >= 0) & (wb + wc <= 1)
        if inside.any():
            best = np.flatnonzero(inside)[np.argmin(order[inside])]
            ids[n] = triangles[best]
            weights[n] = (1 - wb[best] - wc[best], wb[best], wc[best])
        else:
            ids[n] = np.argmin(np.linalg.norm(vertices2d - (px, py), axis=1))
            weights[n] = (1.0, 0.0, 0.0)
    return ids, weights


def carry(ids: np.ndarray, weights: np.ndarray, per_frame: np.ndarray) -> np.ndarray:
    """Positions (T, N, D) of anchored points, given the anchor vertices on every frame (T, V, D)."""
    return np.einsum("nk,tnkd->tnd", weights, per_frame[:, ids])


# ----------------------------------------------------------------------------- scoring


def score_tracks(tracks: Tracks, truth_pixels: np.ndarray, truth_positions: np.ndarray, visible: np.ndarray,
                 compared: np.ndarray, threshold_px: float) -> TrackScores:
    """Every 2D / 3D / jitter metric of one method's tracks against the truth (metrics.py).

    Errors and jitter are taken over `compared`, the visible (frame, seed) pairs every method
    gives a position for, so methods are scored on the same frames; survival and coverage
    count the method's own gaps over every visible pair."""
    errors = metrics.end_point_errors(tracks.pixels, truth_pixels)
    later = compared.copy()
    later[0] = False
    per_frame = np.array([metrics.mean_valid(errors[t], compared[t]) for t in range(len(errors))])
    chosen = errors[later]
    error_3d = error_3d_shape = None
    if tracks.positions is not None and np.isfinite(tracks.positions).any():
        aligned = metrics.aligned_point_errors(tracks.positions, truth_positions, compared)
        error_3d = metrics.mean_valid(aligned, compared) * 1000.0
        shaped = metrics.aligned_point_errors(tracks.positions, truth_positions, compared, scale=True)
        error_3d_shape = metrics.mean_valid(shaped, compared) * 1000.0
    seen_later = visible.copy()
    seen_later[0] = False
    return TrackScores(
        epe_mean=float(chosen.mean()) if chosen.size else float("nan"),
        epe_median=float(np.median(chosen)) if chosen.size else float("nan"),
        epe_per_frame=per_frame,
        by_motion=metrics.errors_by_motion(errors, truth_pixels, compared),
        survival=float(metrics.survival(errors, visible, threshold_px).mean()),
        coverage=float(np.isfinite(errors)[seen_later].mean()) if seen_later.any() else float("nan"),
        jitter=metrics.jitter(tracks.pixels, compared),
        jitter_of_error=metrics.jitter(tracks.pixels - truth_pixels, compared),
        error_3d_mm=error_3d,
        error_3d_shape_mm=error_3d_shape,
    )


def compared_pairs(visible: np.ndarray, methods: dict) -> np.ndarray:
    """(T, N) visible pairs that every method gives a position for."""
    have = [np.isfinite(tracks.pixels).all(axis=-1) for tracks in methods.values()]
    return visible & np.logical_and.reduce(have)


def mesh_errors(rendered: RenderedSequence, vertices: np.ndarray, triangles: np.ndarray, canonical: np.ndarray,
                intrinsics: np.ndarray) -> MeshErrors:
    """Per-vertex 3D error of a tracked mesh (vertices (T, V, 3), camera space).

    Each vertex is tied on frame 0 to the true surface point under its projection (face skin
    only, and only where the vertex is not hidden behind the mesh itself); on every frame the
    mesh is rigidly aligned to the truth over the anchored vertices the truth sees, and each
    vertex's distance is averaged over the frames."""
    truth0 = rendered.ground_truth(0)
    first = vertices[0]
    pixels = np.rint(project(first, intrinsics)).astype(np.int64)
    size = rendered.spec.image_size
    own_depth = rasterize(project(first, intrinsics), first[:, 2], triangles, (0, 0, size, size)).depth
    anchored = np.isfinite(first).all(axis=1) & visible_points(first, own_depth, intrinsics)
    anchored &= (pixels >= 0).all(axis=1) & (pixels < size).all(axis=1)
    rows, cols = np.clip(pixels[:, 1], 0, size - 1), np.clip(pixels[:, 0], 0, size - 1)
    anchored &= truth0["surface"][rows, cols] == SURFACE_FACE
    index = np.flatnonzero(anchored)
    truth, _, seen = rendered.surface_tracks(truth0["triangle"][rows[index], cols[index]],
                                             truth0["barycentric"][rows[index], cols[index]])
    aligned = metrics.aligned_point_errors(vertices[:, index], truth, seen)
    per_vertex = np.full(len(first), np.nan)
    per_vertex[index] = metrics.per_point_mean(aligned, seen) * 1000.0
    return MeshErrors(canonical, triangles, per_vertex, metrics.mean_valid(aligned, seen) * 1000.0)


def depth_scores(maps_depth: list[np.ndarray], truth_depth: list[np.ndarray]) -> dict:
    """Pooled depth errors (median-scaled and raw) and the share of true face pixels covered."""
    scaled = [metrics.depth_errors(p, t, median_scaling=True) for p, t in zip(maps_depth, truth_depth)]
    raw = [metrics.depth_errors(p, t, median_scaling=False) for p, t in zip(maps_depth, truth_depth)]
    face_pixels = sum(int((t > 0).sum()) for t in truth_depth)
    pooled = metrics.pooled_depth_errors(raw)
    return {"scaled": metrics.pooled_depth_errors(scaled), "raw": pooled,
            "coverage": pooled.pixels / face_pixels if face_pixels else float("nan")}


def full_depth(maps, size: int) -> np.ndarray:
    """A capture frame's depth over the whole frame, 0 off the face."""
    if not maps.has_face:
        return np.zeros((size, size), np.float32)
    full = maps.full()
    return np.where(full.mask, full.depth, 0)


def mesh_depth(vertices: np.ndarray, triangles: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
    """Depth map (H, W) of a camera-space mesh, 0 where it does not cover; NaN vertices drop their triangles."""
    if not np.isfinite(vertices).any():
        return np.zeros((size, size), np.float32)
    keep = np.isfinite(vertices[triangles]).all(axis=(1, 2))
    safe = np.nan_to_num(vertices, nan=1.0)
    return rasterize(project(safe, intrinsics), safe[:, 2], triangles[keep], (0, 0, size, size)).depth


# ----------------------------------------------------------------------------- one sequence


@dataclass
class _Run:
    """What the pipeline and the baseline produced on one clip, with the truth of the seeds."""

    captured: CaptureFolder
    landmark_positions: np.ndarray  # (T, 478, 3)
    seeds: np.ndarray  # (N, 2) frame-0 pixels
    truth_positions: np.ndarray  # (T, N, 3)
    truth_pixels: np.ndarray  # (T, N, 2)
    visible: np.ndarray  # (T, N)
    methods: dict  # label -> Tracks
    reconstruction: object  # the smoothed reconstruction (reconstruction_format.Reconstruction)
    timings: dict


def evaluate_sequence(rendered: RenderedSequence, backend: str, settings: Settings, render_seconds: float,
                      workdir: Path) -> SequenceResult:
    """Run the pipeline and the baseline on one rendered clip and score them."""
    run = _run_pipeline(rendered, backend, settings, workdir)
    run.timings = {"render": (rendered.frame_count, render_seconds * rendered.frame_count), **run.timings}
    started = time.perf_counter()
    compared = compared_pairs(run.visible, run.methods)
    scores = {label: score_tracks(tracks, run.truth_pixels, run.truth_positions, run.visible, compared,
                                  settings.survival_threshold_px) for label, tracks in run.methods.items()}
    depth = _depth_results(rendered, backend, run)
    meshes = _mesh_results(rendered, backend, run)
    run.timings["scoring"] = (rendered.frame_count, time.perf_counter() - started)
    return SequenceResult(rendered.spec.name, backend, rendered.frame_count, len(run.seeds), run.timings,
                          metrics.jitter(run.truth_pixels, run.visible), scores, depth, meshes)


def _run_pipeline(rendered: RenderedSequence, backend: str, settings: Settings, workdir: Path) -> _Run:
    spec, frames = rendered.spec, rendered.frame_count
    timings = {}
    mediapipe_capture, seconds = capture(rendered.folder / "frames", workdir / "mediapipe", "mediapipe", spec.focal_px)
    timings["capture (mediapipe)"] = (frames, seconds)
    captured = mediapipe_capture
    raw_capture, _ = capture(rendered.folder / "frames", workdir / "raw", "mediapipe", spec.focal_px, appearance=False)
    if backend != "mediapipe":
        captured, seconds = capture(rendered.folder / "frames", workdir / backend, backend, spec.focal_px)
        timings[f"capture ({backend})"] = (frames, seconds)
    lm_pixels, lm_positions = landmarks(raw_capture)
    truth0 = rendered.ground_truth(0)
    seeds = _place_seeds(truth0, [captured, mediapipe_capture], lm_pixels[0], settings.seed_points, spec)
    truth_positions, truth_pixels, visible = rendered.surface_tracks(
        truth0["triangle"][seeds[:, 1], seeds[:, 0]], truth0["barycentric"][seeds[:, 1], seeds[:, 0]])
    ids, weights = anchor_to_mesh(seeds.astype(np.float64), lm_pixels[0], load_template().triangles,
                                  lm_positions[0, :, 2])
    methods = {BASELINE: Tracks(carry(ids, weights, lm_pixels), carry(ids, weights, lm_positions))}
    methods[ours(backend, smooth=False)], _, seconds = reconstruct_seeds(captured, seeds, smooth=False)
    timings["reconstruct (smoothing off)"] = (frames, seconds)
    methods[ours(backend)], reconstruction, seconds = reconstruct_seeds(captured, seeds, smooth=True)
    timings["reconstruct"] = (frames, seconds)
    return _Run(captured, lm_positions, seeds, truth_positions, truth_pixels, visible, methods, reconstruction, timings)


def _place_seeds(truth0: dict, captures: list[CaptureFolder], first_landmarks: np.ndarray, count: int,
                 spec) -> np.ndarray:
    """Seeds on frame-0 face skin that every backend's mask and MediaPipe's landmark hull cover."""
    firsts = [captured.frame(0) for captured in captures]
    if not np.isfinite(first_landmarks).all() or not all(first.has_face for first in firsts):
        raise RuntimeError(f"{spec.name}: no face found on frame 0, so no seeds can be placed")
    allowed = hull_mask(first_landmarks, (spec.image_size, spec.image_size))
    for first in firsts:
        allowed &= first.full().mask
    return choose_seeds(truth0["surface"] == SURFACE_FACE, allowed, count, seed=spec.seed)


def _depth_results(rendered: RenderedSequence, backend: str, run: _Run) -> dict:
    """Depth scores of the capture maps, the reconstructed mesh and the landmark mesh."""
    size, intrinsics = rendered.spec.image_size, rendered.spec.intrinsics()
    truth_depth = []
    for frame in range(rendered.frame_count):
        truth = rendered.ground_truth(frame)
        truth_depth.append(np.where(truth["face_mask"], truth["depth"], 0))
    reconstruction = run.reconstruction
    triangles = load_template().triangles
    return {
        f"capture maps ({backend})": depth_scores(
            [full_depth(run.captured.frame(t), size) for t in range(rendered.frame_count)], truth_depth),
        ours(backend): depth_scores([mesh_depth(v, reconstruction.triangles, intrinsics, size)
                                     for v in np.asarray(reconstruction.vertices, np.float64)], truth_depth),
        BASELINE: depth_scores([mesh_depth(v, triangles, intrinsics, size) for v in run.landmark_positions],
                               truth_depth),
    }


def _mesh_results(rendered: RenderedSequence, backend: str, run: _Run) -> dict:
    """Per-vertex 3D errors of the reconstructed mesh and of the landmark mesh."""
    template, intrinsics = load_template(), rendered.spec.intrinsics()
    reconstruction = run.reconstruction
    return {
        ours(backend): mesh_errors(rendered, np.asarray(reconstruction.vertices, np.float64), reconstruction.triangles,
                                   reconstruction.canonical_vertices, intrinsics),
        BASELINE: mesh_errors(rendered, run.landmark_positions, template.triangles, template.vertices, intrinsics),
    }


# ----------------------------------------------------------------------------- real clips


def evaluate_grid_clip(clip: Path, seed_points: int, workdir: Path) -> JitterResult:
    """Jitter of the seeds' tracks on a real static-camera clip: raw landmarks, ours before and after smoothing."""
    captured, _ = capture(clip, workdir / "grid", "mediapipe", None)
    lm_pixels, lm_positions = landmarks(capture(clip, workdir / "grid-raw", "mediapipe", None, appearance=False)[0])
    first = captured.frame(0).full()
    if not (first.has_face and np.isfinite(lm_pixels[0]).all()):
        raise RuntimeError(f"{clip.name}: no face found on frame 0")
    face = first.mask & hull_mask(lm_pixels[0], captured.frame_size)
    seeds = choose_seeds(face, face, seed_points)
    template = load_template()
    ids, weights = anchor_to_mesh(seeds.astype(np.float64), lm_pixels[0], template.triangles, lm_positions[0, :, 2])
    result = {BASELINE: metrics.jitter(carry(ids, weights, lm_pixels))}
    for smooth in (False, True):
        tracks, _, _ = reconstruct_seeds(captured, seeds, smooth)
        result[ours("mediapipe", smooth)] = metrics.jitter(tracks.pixels)
    return JitterResult(clip.stem, len(seeds), result)


# ----------------------------------------------------------------------------- the whole suite


@dataclass
class SuiteResults:
    """Everything one accuracy run found, for accuracy_report.write_report."""

    results: list  # SequenceResult per (clip, backend)
    grid: list  # JitterResult per GRID clip
    failures: list  # "name: error" per clip that failed
    notes: list  # plain sentences for the report (parts skipped and why)


def run(settings: Settings | None = None) -> SuiteResults:
    """Render (cached), run and score the suite and the GRID clips. A clip that fails is listed
    with its error in `failures` and the others still run."""
    settings = settings or Settings()
    found = SuiteResults([], [], [], [])
    with _workdir() as workdir:
        for style, seed in settings.suite:
            rendered, render_seconds = rendered_sequence(style, seed, settings)
            for backend in backends():
                print(f"scoring {rendered.spec.name} with the {backend} backend...", flush=True)
                _attempt(found.failures, f"{rendered.spec.name} ({backend})", found.results.append,
                         lambda: evaluate_sequence(rendered, backend, settings, render_seconds, workdir))
        clips = sorted(GRID_DIR.glob("*.mpg")) if settings.grid_clips else []
        if settings.grid_clips and not clips:
            found.notes.append(f"Skipped the real clips: no GRID clips in {GRID_DIR} (../shared beside the checkout).")
        for clip in clips:
            print(f"jitter on {clip.name}...", flush=True)
            _attempt(found.failures, clip.name, found.grid.append,
                     lambda: evaluate_grid_clip(clip, settings.seed_points, workdir))
    return found


def _attempt(failures: list[str], name: str, keep, compute) -> None:
    """keep(compute()), or record the failure (one failing clip must not hide the others)."""
    try:
        keep(compute())
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        failures.append(f"{name}: {type(exc).__name__}: {exc}")


@contextmanager
def _workdir():
    """bench/cache/runs, emptied before and after (captures are recomputed every run, for timing)."""
    path = CACHE / "runs"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
