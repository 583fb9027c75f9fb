"""`make bench` (runtime side): speed, reconstruction, the network, accuracy -> bench/report.md and PNG plots.

    .venv-runtime/bin/python -m bench [--only speed|reconstruction|network|accuracy ...]
        [--out DIR] [--frames 60] [--size 384] [--samples 16] [--seeds 300] [--no-grid]

Each part runs even when another fails; a failed part is written into the report and makes the
exit status 1. Rendered clips are cached in bench/cache/ (delete it to render again). With
--only the report goes to bench/cache/partial/ unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .paths import REPO
from .report import Report

PARTS = ("speed", "reconstruction", "network", "accuracy")


def run_speed(report: Report, args) -> None:
    from . import speed

    speed.run(report)


def run_reconstruction(report: Report, args) -> None:
    from . import reconstruction

    reconstruction.run(report)


def run_network(report: Report, args) -> None:
    from . import network

    report.section("Network (Face Anything predictor, CPU)", network.markdown_table(network.run_benchmark()))


def run_accuracy(report: Report, args) -> None:
    from .accuracy import Settings, run
    from .accuracy_report import write_report

    settings = Settings(frame_count=args.frames, image_size=args.size, samples=args.samples,
                        seed_points=args.seeds, grid_clips=not args.no_grid)
    found = run(settings)
    write_report(report, settings, found.results, found.grid, found.failures, found.notes)
    if found.failures:
        raise RuntimeError("accuracy benchmark: " + "; ".join(found.failures))


RUNNERS = {"speed": run_speed, "reconstruction": run_reconstruction, "network": run_network, "accuracy": run_accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--out", type=Path, help="report folder (default: bench/, or bench/cache/partial/ "
                        "with --only, so that a partial run never replaces the full report)")
    parser.add_argument("--frames", type=int, default=60, help="frames per synthetic clip")
    parser.add_argument("--size", type=int, default=384, help="synthetic frame size in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--seeds", type=int, default=300, help="seed points per clip")
    parser.add_argument("--no-grid", action="store_true", help="skip the real GRID clips in the accuracy part")
    args = parser.parse_args(argv)
    out = args.out or (REPO / "bench" / "cache" / "partial" if args.only else REPO / "bench")
    report = Report(out, "Face Anything for Blender: benchmarks")
    failed = []
    for part in args.only or PARTS:
        started = time.perf_counter()
        print(f"== {part}", flush=True)
        try:
            RUNNERS[part](report, args)
        except Exception:  # noqa: BLE001  (a failing part is reported; the others still run)
            failed.append(part)
            report.section(f"{part}: failed", "```\n" + traceback.format_exc()[-4000:] + "```")
            traceback.print_exc()
        print(f"== {part}: {time.perf_counter() - started:.0f} s", flush=True)
    path = report.write()
    print(f"wrote {path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
