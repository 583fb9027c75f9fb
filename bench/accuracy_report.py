"""The accuracy part of bench/report.md: tables, the verdict and the plots of what accuracy.run found.

Values "over sequences" are the mean of the per-sequence values (each clip counts once).
"""
from __future__ import annotations

import numpy as np

from . import metrics, plots
from .accuracy import BASELINE, FACEANYTHING_ENV, SURVIVAL_THRESHOLD, JitterResult, SequenceResult, Settings, ours
from .report import Report, markdown_table


def write_report(report: Report, settings: Settings, results: list[SequenceResult], grid: list[JitterResult],
                 failures: list[str], notes: list[str]) -> None:
    report.section("Accuracy against exact ground truth", _introduction(settings, results))
    for failure in failures:
        report.text(f"**Failed:** {failure}")
    for note in notes:
        report.text(note)
    for backend in dict.fromkeys(r.backend for r in results):
        chosen = [r for r in results if r.backend == backend]
        report.section(f"Ours ({backend} backend) and raw MediaPipe landmarks, all sequences",
                       _summary(chosen, backend))
        report.text(_verdict(chosen, backend, grid))
        report.text("Per sequence:\n\n" + _per_sequence(chosen, backend))
        report.text("Depth on the true face pixels (RMSE in mm; pixel-weighted within a sequence):\n\n"
                    + _depth_table(chosen))
        _add_plots(report, chosen, backend, grid)
    if grid:
        report.section("Jitter on real static-camera clips (GRID corpus, no ground truth)", _grid_table(grid))
    if results:
        report.section("Throughput of each stage (this machine, CPU)", _throughput(results))
    if not any(r.backend == "faceanything" for r in results):
        report.text(f"The Face Anything backend was skipped: set {FACEANYTHING_ENV} to a checkpoint to score it too.")


def _ratio(ours_value, baseline_value):
    if ours_value is None or baseline_value is None or not baseline_value:
        return None
    return ours_value / baseline_value


def _mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _introduction(settings: Settings, results: list[SequenceResult]) -> str:
    names = ", ".join(dict.fromkeys(r.name for r in results)) or "none"
    return (
        f"Synthetic clips rendered from the ICT-FaceKit head (MIT) with Cycles on the CPU "
        f"({settings.image_size}x{settings.image_size} px, {settings.samples} samples, {settings.frame_count} "
        f"frames at 25 fps): {names}. Ground truth (depth, per-pixel canonical coordinate, face mask, every vertex "
        f"in 2D and 3D with visibility, intrinsics, head pose, expression weights) is computed analytically from "
        f"the same posed mesh (`bench/groundtruth.py`). Ground-truth canonical coordinates are "
        f"positions on ICT's generic neutral head, not in the pipeline's canonical space, so every metric here "
        f"compares pixels or camera-space geometry. Definitions: `bench/metrics.py`.\n\n"
        f"Ours: the capture (true focal length given) then `reconstruct` with its default options (template "
        f"mesh, or the dense mesh for a backend with its own canonical space), the seeds requested as "
        f"`pixel:0:X:Y` points; once with smoothing on (the default) and once with it off.\n\n"
        f"Up to {settings.seed_points} seed points per clip on frame-0 face skin; a track fails beyond "
        f"{settings.survival_threshold_px:.1f} px ({SURVIVAL_THRESHOLD:.3f} of the frame width). The baseline is "
        f"what a landmark-keying add-on does: the raw MediaPipe landmarks of the same capture, each seed carried "
        f"by the landmark triangle holding it on frame 0. Errors and jitter are taken on the same frames for "
        f"every method: the visible (frame, seed) pairs that all methods give a position for (the baseline has "
        f"none on frames where MediaPipe finds no face; ours fills them); survival and coverage count each "
        f"method's own gaps. Ratios are ours / baseline: below 1 is better for errors and jitter, above 1 is "
        f"better for survival."
    )


_TRACK_METRICS = (
    ("2D end-point error, mean (px)", lambda s: s.epe_mean),
    ("2D end-point error, median (px)", lambda s: s.epe_median),
    ("survival (fraction of the clip)", lambda s: s.survival),
    ("jitter (px/frame²)", lambda s: s.jitter),
    ("jitter of the error track (px/frame²)", lambda s: s.jitter_of_error),
    ("3D seed error, rigid alignment (mm)", lambda s: s.error_3d_mm),
    ("3D seed error, similarity alignment: the shape alone (mm)", lambda s: s.error_3d_shape_mm),
)


def _summary(results: list[SequenceResult], backend: str) -> str:
    labels = (ours(backend), ours(backend, smooth=False), BASELINE)
    rows = []
    for title, getter in _TRACK_METRICS:
        values = [_mean(getter(r.scores[label]) for r in results) for label in labels]
        rows.append([title, *values, _ratio(values[0], values[2])])
    mesh = [_mean(r.meshes[label].mean_mm for r in results) for label in (labels[0], BASELINE)]
    rows.append(["3D mesh vertex error, rigid alignment (mm)", mesh[0], None, mesh[1], _ratio(*mesh)])
    for key, title in (("scaled", "depth RMSE, median-scaled (mm)"), ("raw", "depth RMSE, as predicted (mm)")):
        depth = [_mean(r.depth[label][key].rmse_mm for r in results) for label in (labels[0], BASELINE)]
        rows.append([title, depth[0], None, depth[1], _ratio(*depth)])
    truth = _mean(r.truth_jitter for r in results)
    text = markdown_table(["metric (mean over sequences)", *labels, "ours / baseline"], rows)
    return text + f"\n\nThe true motion's own jitter on these seeds: {truth:.3g} px/frame²."


def _verdict(results: list[SequenceResult], backend: str, grid: list[JitterResult]) -> str:
    """Plain sentences: is ours below the baseline, with the numbers either way."""
    labels = (ours(backend), BASELINE)
    checks = [("2D error (px)", [_mean(r.scores[label].epe_mean for r in results) for label in labels]),
              ("added jitter on synthetic clips (acceleration of the error track, px/frame²)",
               [_mean(r.scores[label].jitter_of_error for r in results) for label in labels])]
    if grid and backend == "mediapipe":
        checks.append(("jitter on the real GRID clips (px/frame²)",
                       [_mean(g.jitter[label] for g in grid) for label in labels]))
    lines = []
    for title, (mine, theirs) in checks:
        word = "below" if mine < theirs else "NOT below"
        lines.append(f"- Our {title} is {word} raw MediaPipe's: {mine:.3g} vs {theirs:.3g} "
                     f"(ratio {mine / theirs:.2f}).")
    return "\n".join(lines)


def _per_sequence(results: list[SequenceResult], backend: str) -> str:
    rows = []
    for r in results:
        mine, theirs = r.scores[ours(backend)], r.scores[BASELINE]
        rows.append([r.name, r.seeds, mine.epe_mean, theirs.epe_mean, _ratio(mine.epe_mean, theirs.epe_mean),
                     mine.survival, theirs.survival, mine.jitter_of_error, theirs.jitter_of_error,
                     mine.error_3d_mm, theirs.error_3d_mm, theirs.coverage])
    return markdown_table(["sequence", "seeds", "EPE ours", "EPE baseline", "ratio", "survival ours",
                           "survival baseline", "error jitter ours", "error jitter baseline", "3D mm ours",
                           "3D mm baseline", "baseline coverage"], rows)


def _depth_table(results: list[SequenceResult]) -> str:
    rows = [[r.name, label, d["scaled"].rmse_mm, d["scaled"].abs_rel, d["raw"].rmse_mm, d["raw"].abs_rel, d["coverage"]]
            for r in results for label, d in r.depth.items()]
    return markdown_table(["sequence", "depth from", "RMSE scaled", "AbsRel scaled", "RMSE raw", "AbsRel raw",
                           "face pixels covered"], rows)


def _add_plots(report: Report, results: list[SequenceResult], backend: str, grid: list[JitterResult]) -> None:
    prefix = f"accuracy_{backend}"
    series = {r.name: {label: s.epe_per_frame for label, s in r.scores.items()} for r in results}
    report.add_image(plots.error_over_time(series, report.image_path(f"{prefix}_error_over_time.png")),
                     "Mean 2D end-point error per frame (seeded on frame 0)")
    bins, methods, counts = _pooled_motion(results)
    report.add_image(plots.error_by_motion(bins, methods, counts, report.image_path(f"{prefix}_error_by_motion.png")),
                     "2D end-point error by the true motion of the point since the previous frame, all sequences")
    report.add_image(plots.vertex_error_maps(_pooled_meshes(results), report.image_path(f"{prefix}_vertex_error.png")),
                     "Per-vertex 3D error after per-frame rigid alignment, mean over frames and sequences "
                     "(grey: vertices not tied to the face skin on frame 0)")
    labels = (BASELINE, ours(backend, smooth=False), ours(backend))
    groups = {r.name: {**{label: r.scores[label].jitter for label in labels}, "truth": r.truth_jitter} for r in results}
    groups.update({f"GRID {g.clip}": g.jitter for g in grid if backend == "mediapipe"})
    report.add_image(plots.jitter_bars(groups, report.image_path(f"{prefix}_jitter.png")),
                     "Jitter before and after smoothing: synthetic sequences (beside the true motion's own) "
                     "and real GRID clips")


def _pooled_motion(results: list[SequenceResult]):
    """Bins, per-method mean error per bin (count-weighted over sequences) and the counts."""
    first = next(iter(results[0].scores.values())).by_motion
    bins = [(low, high) for low, high, _, _ in first]
    methods, totals = {}, np.zeros(len(bins))
    for label in results[0].scores:
        sums, totals = np.zeros(len(bins)), np.zeros(len(bins))
        for r in results:
            for i, (_, _, mean, count) in enumerate(r.scores[label].by_motion):
                if count:
                    sums[i] += mean * count
                    totals[i] += count
        methods[label] = list(np.where(totals > 0, sums / np.maximum(totals, 1), np.nan))
    return bins, methods, [int(t) for t in totals]


def _pooled_meshes(results: list[SequenceResult]) -> dict:
    """label -> (canonical vertices, triangles, per-vertex error averaged over the sequences with that mesh)."""
    pooled = {}
    for label in results[0].meshes:
        first = results[0].meshes[label]
        errors = np.stack([r.meshes[label].vertex_error_mm for r in results
                           if r.meshes[label].vertex_error_mm.shape == first.vertex_error_mm.shape])
        pooled[label] = (first.canonical, first.triangles, metrics.per_point_mean(errors, np.isfinite(errors)))
    return pooled


def _grid_table(grid: list[JitterResult]) -> str:
    labels = list(grid[0].jitter)
    rows = [[g.clip, g.seeds, *(g.jitter[label] for label in labels),
             _ratio(g.jitter[ours("mediapipe")], g.jitter[BASELINE])] for g in grid]
    return markdown_table(["clip", "seeds", *labels, "ours / baseline"], rows) + (
        "\n\nJitter (px/frame²) of seeds placed on frame 0's face. Clips from the GRID audiovisual corpus "
        "(Cooke et al. 2006, CC BY 4.0).")


def _throughput(results: list[SequenceResult]) -> str:
    totals: dict[str, list[float]] = {}
    for r in results:
        for stage, (frames, seconds) in r.timings.items():
            entry = totals.setdefault(stage, [0, 0.0])
            entry[0] += frames
            entry[1] += seconds
    rows = [[stage, frames, seconds, frames / seconds if seconds else None]
            for stage, (frames, seconds) in totals.items()]
    return markdown_table(["stage", "frames", "seconds", "frames/s"], rows) + (
        "\n\nRender: Cycles on the CPU, timed when the clip was first rendered (later runs reuse bench/cache). "
        "Scoring reads the ground truth and rasterises the meshes for the depth metrics.")
