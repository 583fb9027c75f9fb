"""The appearance stage, before and after, on rendered clips with exact ground truth.

    .venv-runtime/bin/python -m bench.appearance_ab [--frames 48] [--size 512] \
        [STYLE-SEED ...] [--real CLIP ...]

For every clip (rendered once into bench/cache/sequences/ by accuracy.rendered_sequence) and for
both inputs, the PNG folder and the same frames encoded as an H.264 video, it captures with the
appearance stage off ("before") and on ("after") and scores side by side on the same seeds:
MediaPipe's landmark mesh carried to the seeds (from the "before" capture's raw landmarks), the
project before and after (reconstruction, smoothing on) and the "after" capture's refined
landmark mesh carried the same way. Two more rows score the landmarks themselves, raw
(MediaPipe's, the "before" capture) and refined (the "after" capture), each followed from its
frame-0 place on the face's skin (the same place in both: the stage starts from MediaPipe's
first landmarks). Columns: 2D end-point error mean and median (px), jitter of the tracks
(px/frame^2; the true motion's own acceleration is in it, so on fast motion every method shows
about the same) and of their error (the track minus the truth: the jitter a method adds),
survival, 3D error of the points after rigid alignment and after a similarity alignment (mm: the
face's shape alone, its size and distance aligned away), mean per-vertex 3D error of the
reconstructed mesh (mm) and capture / reconstruction time per frame (ms).
``--real`` adds jitter on real clips (GRID, the sample; real motion included): of the landmarks,
raw and refined, and of seeds on the face (``real_clip_jitter``).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from model_runtime.template import load_template
from .accuracy import (BASELINE, Settings, Tracks, _place_seeds, anchor_to_mesh, carry, choose_seeds, compared_pairs,
                       hull_mask, landmarks, mesh_errors, reconstruct_seeds, rendered_sequence, score_tracks)
from .groundtruth import RenderedSequence
from .sequences import SURFACE_FACE

DEFAULT_CLIPS = ("turn-12", "talk-11", "occlusion-14", "fast-13")
RAW_LANDMARKS = "raw MediaPipe landmarks"
REFINED_LANDMARKS = "refined landmarks"


def encode_video(frames: Path, out: Path, fps: float) -> Path:
    """The PNG frames as an H.264 mp4 (high quality, as delivered footage would be)."""
    from model_runtime.frames import list_images, read_image

    with av.open(str(out), "w") as container:
        stream = None
        for path in list_images(frames):
            image = read_image(path)
            if stream is None:
                stream = container.add_stream("libx264", rate=int(round(fps)))
                stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
                stream.options = {"crf": "16"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def _capture_with(source: Path, folder: Path, focal_px: float, appearance: bool):
    from model_runtime.capture import CaptureOptions, run_capture
    from model_runtime.capture_folder import CaptureFolder

    options = CaptureOptions(focal=f"{focal_px:g}px" if focal_px else None, overwrite=True,
                             appearance=appearance)
    started = time.perf_counter()
    run_capture(source, folder, options)
    return CaptureFolder(folder), time.perf_counter() - started


def evaluate(rendered: RenderedSequence, source: Path, workdir: Path, seed_points: int, threshold_px: float) -> list:
    spec, frames = rendered.spec, rendered.frame_count
    before, before_s = _capture_with(source, workdir / "before", spec.focal_px, False)
    after, after_s = _capture_with(source, workdir / "after", spec.focal_px, True)
    lm_pixels, lm_positions = landmarks(before)
    refined_pixels, refined_positions = landmarks(after)
    truth0 = rendered.ground_truth(0)
    seeds = _place_seeds(truth0, [before, after], lm_pixels[0], seed_points, spec)
    truth_positions, truth_pixels, visible = rendered.surface_tracks(
        truth0["triangle"][seeds[:, 1], seeds[:, 0]], truth0["barycentric"][seeds[:, 1], seeds[:, 0]])
    triangles = load_template().triangles
    ids, weights = anchor_to_mesh(seeds.astype(np.float64), lm_pixels[0], triangles, lm_positions[0, :, 2])
    refined_ids, refined_weights = anchor_to_mesh(seeds.astype(np.float64), refined_pixels[0], triangles,
                                                  refined_positions[0, :, 2])
    methods = {BASELINE + " carried": Tracks(carry(ids, weights, lm_pixels), carry(ids, weights, lm_positions)),
               "refined landmarks carried": Tracks(carry(refined_ids, refined_weights, refined_pixels),
                                                   carry(refined_ids, refined_weights, refined_positions))}
    rows_time, meshes = {BASELINE + " carried": (before_s, None), "refined landmarks carried": (after_s, None)}, {}
    for label, folder, capture_s in (("before (stage off)", before, before_s), ("after (stage on)", after, after_s)):
        tracks, reconstruction, seconds = reconstruct_seeds(folder, seeds, smooth=True)
        methods[label] = tracks
        rows_time[label] = (capture_s, seconds)
        meshes[label] = mesh_errors(rendered, np.asarray(reconstruction.vertices, np.float64), reconstruction.triangles,
                                    reconstruction.canonical_vertices, spec.intrinsics()).mean_mm
    compared = compared_pairs(visible, methods)
    rows = []
    for label, tracks in methods.items():
        score = score_tracks(tracks, truth_pixels, truth_positions, visible, compared, threshold_px)
        capture_s, reconstruct_s = rows_time[label]
        rows.append(_row(label, score, meshes.get(label, float("nan")), 1000 * capture_s / frames,
                         float("nan") if reconstruct_s is None else 1000 * reconstruct_s / frames))
    return _landmark_rows(rendered, {RAW_LANDMARKS: (lm_pixels, lm_positions),
                                     REFINED_LANDMARKS: (refined_pixels, refined_positions)}, threshold_px) + rows


def _row(label: str, score, mesh_mm: float, capture_ms: float, reconstruct_ms: float) -> tuple:
    return (label, score.epe_mean, score.epe_median, score.jitter, score.jitter_of_error, score.survival,
            score.error_3d_mm, score.error_3d_shape_mm, mesh_mm, capture_ms, reconstruct_ms)


def _landmark_rows(rendered: RenderedSequence, landmark_tracks: dict, threshold_px: float) -> list:
    """The landmarks themselves scored as tracks: each landmark whose frame-0 pixel lies on the
    face's skin is followed as the surface point under that pixel; landmark_tracks maps a label to
    (T, 478, 2) pixels and (T, 478, 3) positions, all with the same frame-0 landmarks."""
    truth0 = rendered.ground_truth(0)
    first = next(iter(landmark_tracks.values()))[0][0]
    size = rendered.spec.image_size
    pixel = np.clip(np.rint(first).astype(np.int64), 0, size - 1)
    on_skin = np.flatnonzero(truth0["surface"][pixel[:, 1], pixel[:, 0]] == SURFACE_FACE)
    rows, cols = pixel[on_skin, 1], pixel[on_skin, 0]
    truth_positions, truth_pixels, visible = rendered.surface_tracks(truth0["triangle"][rows, cols],
                                                                     truth0["barycentric"][rows, cols])
    methods = {label: Tracks(pixels[:, on_skin], positions[:, on_skin])
               for label, (pixels, positions) in landmark_tracks.items()}
    compared = compared_pairs(visible, methods)
    return [_row(label, score_tracks(tracks, truth_pixels, truth_positions, visible, compared, threshold_px),
                 float("nan"), float("nan"), float("nan")) for label, tracks in methods.items()]


def real_clip_jitter(clip: Path, workdir: Path, seed_points: int) -> dict:
    """Jitter (px/frame^2) on a real clip, real motion included: of the 478 landmarks, raw (stage
    off) and refined (stage on), and of seeds on the frame-0 face: MediaPipe's landmark mesh
    carried to them and the project's tracks (reconstruction, smoothing on) before and after."""
    from . import metrics

    folders = {appearance: _capture_with(clip, workdir / str(appearance), None, appearance)[0]
               for appearance in (False, True)}
    raw_pixels, raw_positions = landmarks(folders[False])
    first = folders[True].frame(0).full()
    if not (first.has_face and np.isfinite(raw_pixels[0]).all()):
        raise RuntimeError(f"{clip.name}: no face found on frame 0")
    face = first.mask & hull_mask(raw_pixels[0], folders[True].frame_size)
    seeds = choose_seeds(face, face, seed_points)
    ids, weights = anchor_to_mesh(seeds.astype(np.float64), raw_pixels[0], load_template().triangles,
                                  raw_positions[0, :, 2])
    result = {RAW_LANDMARKS: metrics.jitter(raw_pixels), REFINED_LANDMARKS: metrics.jitter(landmarks(folders[True])[0]),
              BASELINE + " carried": metrics.jitter(carry(ids, weights, raw_pixels))}
    for label, appearance in (("before", False), ("after", True)):
        result[label] = metrics.jitter(reconstruct_seeds(folders[appearance], seeds, smooth=True)[0].pixels)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.appearance_ab", description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", default=DEFAULT_CLIPS, help="STYLE-SEED, e.g. turn-12")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--inputs", default="video,png")
    parser.add_argument("--real", nargs="*", default=[], type=Path, help="real clips to report jitter on")
    args = parser.parse_args(argv)
    settings = Settings(frame_count=args.frames, image_size=args.size)
    print("| clip | input | method | EPE mean | EPE median | jitter | jitter of error | survival | 3D pts mm "
          "| 3D pts mm, scale aligned | 3D mesh mm | capture ms/f | reconstruct ms/f |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for clip in args.clips:
        style, seed = clip.rsplit("-", 1)
        rendered, _ = rendered_sequence(style, int(seed), settings)
        with tempfile.TemporaryDirectory() as tmp:
            inputs = {"png": rendered.folder / "frames"}
            if "video" in args.inputs:
                inputs["video"] = encode_video(rendered.folder / "frames", Path(tmp) / "clip.mp4", rendered.spec.fps)
            for name in args.inputs.split(","):
                for row in evaluate(rendered, inputs[name], Path(tmp) / name, settings.seed_points,
                                    settings.survival_threshold_px):
                    label, *values = row
                    cells = " | ".join("-" if v is None or not np.isfinite(v) else f"{v:.2f}" for v in values)
                    print(f"| {clip} | {name} | {label} | {cells} |", flush=True)
    if args.real:
        print("\n| real clip | raw landmarks | refined landmarks | MediaPipe carried | before | after "
              "| after / raw landmarks |\n|---|---|---|---|---|---|---|")
    for clip in args.real:
        with tempfile.TemporaryDirectory() as tmp:
            jitter = real_clip_jitter(clip, Path(tmp), settings.seed_points)
        cells = " | ".join(f"{value:.3f}" for value in jitter.values())
        print(f"| {clip.name} | {cells} | {jitter['after'] / jitter[RAW_LANDMARKS]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
