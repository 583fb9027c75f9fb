"""Headless capture with the bpy module:

    python -m faceanything_blender capture INPUT -o OUT.blend [--preview PNG] [options]

It enables the add-on from this checkout, sets the scene's Face Anything settings from the
options, and runs the panel's own capture operator and timer function (called here in a loop,
because timers do not fire in background mode). Then it saves the .blend, renders a preview if
asked, and prints the files it wrote and the time each stage took. A failure prints one message
and a hint, without a traceback (``--debug`` shows it), and exits with status 1; Ctrl-C keeps
the finished frames (exit status 130) and the same command resumes.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from .runtime_paths import HintedError

PUMP_INTERVAL_S = 0.05
PRINT_INTERVAL_S = 1.0
CANCEL_WAIT_S = 30.0


class CliError(HintedError):
    """A headless capture that failed; printed as one message and a hint."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceanything_blender", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    capture = commands.add_parser("capture", help="footage -> .blend with the animated face")
    capture.add_argument("input", type=Path, help="a video file or a folder of images")
    capture.add_argument("-o", "--output", type=Path, required=True, help="the .blend to write")
    capture.add_argument("--frames", help="frame range A:B or A:B:STEP, from 0, B excluded (default: all)")
    capture.add_argument("--focal", default="unknown", help="unknown (default), 35mm (35 mm equivalent) or 1200px")
    capture.add_argument("--backend", default="mediapipe", choices=("mediapipe", "faceanything"))
    capture.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    capture.add_argument("--mesh", default="template", choices=("template", "dense"))
    capture.add_argument("--density", default="high", choices=("low", "medium", "high"))
    capture.add_argument("--animation", default="point-cache", choices=("point-cache", "shape-keys"))
    capture.add_argument("--smooth", default="on", choices=("on", "off"))
    capture.add_argument("--points", default="", help="extra points in one argument, space-separated: "
                         "names, X,Y,Z or pixel:FRAME:X:Y (as the panel's Points field)")
    capture.add_argument("--preview", type=Path, help="also render a preview image (PNG)")
    capture.add_argument("--runtime-python", help="the runtime's interpreter (default: as the preferences find it)")
    capture.add_argument("--checkpoint", help="Face Anything weights, for --backend faceanything")
    capture.add_argument("--cache-dir", type=Path, help="where captures are kept (default: the preferences' folder)")
    capture.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_frames(text: str) -> tuple[int, int, int]:
    """``A:B[:S]`` (from 0, B excluded, as the runtime takes it) -> the panel's (first, last, step) from 1."""
    parts = text.split(":")
    example = "e.g. --frames 0:75"
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        start, stop = int(parts[0]), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise CliError(f"--frames {text!r} is not a range", f"Write it as A:B or A:B:STEP, {example}.") from None
    if start < 0 or stop <= start or step < 1:
        raise CliError(f"--frames {text!r} is empty or negative", f"Give 0 <= A < B and STEP >= 1, {example}.")
    return start + 1, stop, step


def parse_focal(text: str) -> tuple[str, float]:
    """``unknown``, ``35mm`` or ``1200px`` -> the panel's (focal_mode, value)."""
    lowered = text.strip().lower()
    if lowered == "unknown":
        return "UNKNOWN", 0.0
    for suffix, mode in (("mm", "MM"), ("px", "PX")):
        if lowered.endswith(suffix):
            try:
                value = float(lowered[: -len(suffix)])
            except ValueError:
                break
            if value > 0:
                return mode, value
    raise CliError(f"--focal {text!r} is not a focal length", "Write unknown, 35mm (35 mm equivalent) or 1200px.")


def configure(context, addon, args: argparse.Namespace) -> None:
    """Set the preferences and the scene's settings from the options, as a user would in the panel."""
    preferences = addon.prefs.get_preferences(context)
    if args.runtime_python:
        preferences.runtime_python = str(Path(args.runtime_python).absolute())
    if args.cache_dir:
        preferences.cache_dir = str(args.cache_dir.resolve())
    if args.checkpoint:
        preferences.checkpoint = str(Path(args.checkpoint).resolve())
    preferences.device = args.device.upper()
    settings = context.scene.faceanything
    footage = args.input.resolve()
    settings.footage_source = "FOLDER" if footage.is_dir() else "FILE"
    if footage.is_dir():
        settings.footage_folder = str(footage)
    else:
        settings.footage_file = str(footage)
    settings.use_frame_range = bool(args.frames)
    if args.frames:
        settings.frame_first, settings.frame_last, settings.frame_step = parse_frames(args.frames)
    settings.focal_mode, value = parse_focal(args.focal)
    if settings.focal_mode == "MM":
        settings.focal_mm = value
    elif settings.focal_mode == "PX":
        settings.focal_px = value
    settings.backend = args.backend
    settings.mesh = args.mesh.upper()
    settings.density = args.density.upper()
    settings.animation = args.animation.replace("-", "_").upper()
    settings.smooth = args.smooth == "on"
    settings.points = args.points


def follow_capture(addon, settings) -> None:
    """Pump the capture timer until the job ends, printing progress; Ctrl-C cancels and keeps frames."""
    last_line, last_print = "", 0.0
    cancel_deadline = None
    while True:
        try:
            if addon.operators.pump_capture() is None:
                return
            line = addon.ui.progress_text(settings)
            now = time.monotonic()
            new_stage = line.split(":")[0] != last_line.split(":")[0]
            if line != last_line and (new_stage or now - last_print >= PRINT_INTERVAL_S):
                print(line, flush=True)
                last_line, last_print = line, now
            if cancel_deadline is not None and now > cancel_deadline:
                addon.operators.abort_capture()
                return
            time.sleep(PUMP_INTERVAL_S)
        except KeyboardInterrupt:
            if cancel_deadline is None:
                print("cancelling (finished frames are kept)...", flush=True)
                addon.operators.cancel_capture()
                cancel_deadline = time.monotonic() + CANCEL_WAIT_S


def run_capture(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    footage = args.input.resolve()
    if not footage.exists():
        raise CliError(f"The footage {footage} does not exist.", "Give a video file or a folder of images.")
    output = args.output.resolve()
    if output.suffix != ".blend":
        raise CliError(f"The output {output} is not a .blend file.", "Give a path ending in .blend (-o out.blend).")
    output.parent.mkdir(parents=True, exist_ok=True)
    # Checked before Blender starts, so a typo costs nothing.
    parse_focal(args.focal)
    if args.frames:
        parse_frames(args.frames)

    started = time.perf_counter()
    import bpy

    from .packaging import PackagingError, disable_checkout, enable_checkout

    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        package = enable_checkout()
    except PackagingError as exc:
        raise CliError(str(exc), "Run `make blender` and check that the checkout is complete.") from exc
    timings["enable the add-on"] = time.perf_counter() - started
    try:
        return capture_and_save(bpy, importlib.import_module(package), package, args, output, timings)
    finally:
        disable_checkout(package)


def capture_and_save(bpy, addon, package: str, args, output: Path, timings: dict[str, float]) -> int:
    context = bpy.context
    configure(context, addon, args)
    settings = context.scene.faceanything
    # Saved first, so that relative paths and the point cache can live next to the .blend.
    bpy.ops.wm.save_as_mainfile(filepath=str(output))
    try:
        bpy.ops.faceanything.capture()
    except RuntimeError:
        pass  # the operator reported the error; the settings hold it in plain words
    if settings.status == "ERROR":
        raise CliError(settings.last_error, settings.last_hint)
    print(f"capturing {args.input} into {settings.capture_dir}", flush=True)
    follow_capture(addon, settings)
    if settings.status == "CANCELLED" or settings.status == "RUNNING":
        print(f"interrupted: {addon.operators.RESUME_HINT} Run the same command again to resume.", file=sys.stderr)
        return 130
    if settings.status == "ERROR":
        log = "".join(f"\n  | {line}" for line in settings.last_log.splitlines())
        raise CliError(settings.last_error + log, settings.last_hint)
    finished = addon.operators.last_capture()
    timings.update(finished.job.state.stage_seconds)
    timings["build the scene"] = finished.build_seconds
    print(f"created {settings.last_result or 'nothing'}", flush=True)
    if settings.warning_count:
        print(f"{settings.warning_count} warning(s), the last: {settings.last_warning}", flush=True)

    started = time.perf_counter()
    # This save overwrites the one made before the capture: no .blend1 backup of that.
    context.preferences.filepaths.save_version = 0
    bpy.ops.wm.save_as_mainfile(filepath=str(output))
    timings["save the .blend"] = time.perf_counter() - started
    written = [output]
    if args.preview:
        started = time.perf_counter()
        preview = args.preview.resolve()
        preview.parent.mkdir(parents=True, exist_ok=True)
        importlib.import_module(f"{package}.scene").render_preview(context.scene, preview)
        timings["render the preview"] = time.perf_counter() - started
        written.append(preview)
    for stage, seconds in timings.items():
        print(f"{stage:<30} {seconds:8.2f} s")
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_capture(args)
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI promises a message, not a traceback
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  hint: this looks like a bug; run again with --debug for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
