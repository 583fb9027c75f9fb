"""Headless capture with the bpy module:

    python -m faceanything_blender capture INPUT -o OUT.blend [--preview PNG] [options]

It enables the add-on from this checkout, sets the scene's Face Anything settings from the
options (every capture and reconstruction option of the runtime's `option_schema.py` is a flag
here), and starts the panel's own capture job and timer function (called here in a loop,
because timers do not fire in background mode). Then it saves the .blend, renders a preview if
asked, and prints the files it wrote and the time each stage took. A failure prints one message
and a hint, without a traceback (``--debug`` shows it), and exits with status 1; Ctrl-C keeps
the finished frames (exit status 130) and the same command resumes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .runtime_paths import UserError, runtime_module

PUMP_INTERVAL_S = 0.05
PRINT_INTERVAL_S = 1.0
CANCEL_WAIT_S = 30.0
BLENDER_OWNS = ("overwrite",)
"""Schema options this CLI leaves out: the extension owns its cache folders and replaces a stale one."""

schema = runtime_module("option_schema")


class CliError(UserError):
    """A headless capture that failed; printed as one message and a hint."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceanything_blender", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    capture = commands.add_parser("capture", help="footage -> .blend with the animated face")
    capture.add_argument("input", type=Path, help="a video file or a folder of images (a sequence)")
    capture.add_argument("-o", "--output", type=Path, required=True, help="the .blend to write")
    schema.add_arguments(capture, schema.CAPTURE, schema.RECONSTRUCT, skip=BLENDER_OWNS)
    capture.add_argument("--animation", default="point-cache", choices=("point-cache", "shape-keys"),
                         help="point-cache: a .pc2 file beside the .blend; shape-keys: one key per frame inside it "
                              "(default: point-cache)")
    capture.add_argument("--preview", type=Path, help="also render a preview image (PNG)")
    capture.add_argument("--runtime-python", help="the runtime's interpreter (default: as the preferences find it)")
    capture.add_argument("--cache-dir", type=Path, help="where captures are kept (default: the preferences' folder)")
    capture.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def option_values(args: argparse.Namespace) -> dict:
    """The schema options the command line gave, checked as the runtime checks them."""
    values = schema.values_from_arguments(args, schema.CAPTURE, schema.RECONSTRUCT)
    try:
        schema.validate(values)
    except UserError as exc:
        raise CliError(exc.message, exc.hint) from None
    return values


def configure(context, addon, args: argparse.Namespace, values: dict) -> dict:
    """Set the preferences and the scene's settings from the options, as a user would in the panel;
    returns the options that have no place on the panel (passed with the request)."""
    preferences = addon.runtime_paths.get_preferences(context)
    if args.runtime_python:
        preferences.runtime_python = str(Path(args.runtime_python).absolute())
    if args.cache_dir:
        preferences.cache_dir = str(args.cache_dir.resolve())
    settings = context.scene.faceanything
    footage = args.input.resolve()
    settings.footage_source = "FOLDER" if footage.is_dir() else "FILE"
    if footage.is_dir():
        settings.footage_folder = str(footage)
    else:
        settings.footage_file = str(footage)
    settings.animation = args.animation.replace("-", "_").upper()
    extra = {}
    for name, value in values.items():
        if not schema.BY_NAME[name].panel:
            extra[name] = value
        else:
            setattr(settings, name, " ".join(value) if isinstance(value, list) else value)
    return extra


class OutputGuard:
    """Keeps the file at `output` as it was unless the capture finishes (set `finished`).

    The file there is moved aside on entry. A finished capture keeps it as ``.blend1``, as
    Blender's own save does; anything else (an error, Ctrl-C, a crash in Python) puts it back, or
    removes the file the capture started when there was none.
    """

    def __init__(self, output: Path):
        self.output = output
        self.aside = output.with_name(f".{output.name}.faceanything-before")
        self.finished = False

    def __enter__(self) -> OutputGuard:
        if self.output.exists():
            os.replace(self.output, self.aside)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.finished:
            if self.aside.exists():
                os.replace(self.aside, self.output.with_suffix(".blend1"))
        elif self.aside.exists():
            os.replace(self.aside, self.output)
        else:
            self.output.unlink(missing_ok=True)


def follow_capture(addon, settings) -> None:
    """Pump the capture timer until the job ends, printing progress; Ctrl-C cancels and keeps frames.

    Ctrl-C only sets a flag that the loop reads: a KeyboardInterrupt raised inside Python that
    Blender's C code called (a timer, a property update) would be printed and swallowed there."""
    last_line, last_print = "", 0.0
    cancel_deadline = None
    interrupted = []
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        while True:
            if addon.capture_job.pump_capture() is None:
                return
            line = addon.ui.progress_text(settings)
            now = time.monotonic()
            new_stage = line.split(":")[0] != last_line.split(":")[0]
            if line != last_line and (new_stage or now - last_print >= PRINT_INTERVAL_S):
                print(line, flush=True)
                last_line, last_print = line, now
            if interrupted and cancel_deadline is None:
                print("cancelling (finished frames are kept)...", flush=True)
                addon.capture_job.cancel_capture()
                cancel_deadline = time.monotonic() + CANCEL_WAIT_S
            if cancel_deadline is not None and now > cancel_deadline:
                addon.capture_job.abort_capture()
                return
            time.sleep(PUMP_INTERVAL_S)
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def run_capture(args: argparse.Namespace) -> int:
    timings: dict[str, float] = {}
    footage = args.input.resolve()
    if not footage.exists():
        raise CliError(f"The footage {footage} does not exist.", "Give a video file or a folder of images.")
    output = args.output.resolve()
    if output.suffix != ".blend":
        raise CliError(f"The output {output} is not a .blend file.", "Give a path ending in .blend (-o out.blend).")
    output.parent.mkdir(parents=True, exist_ok=True)
    values = option_values(args)  # checked before Blender starts, so a typo costs nothing

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
        with OutputGuard(output) as guard:
            guard.finished = capture_and_save(bpy, importlib.import_module(package), package, args, values, output, timings) == 0
        return 0 if guard.finished else 130
    finally:
        disable_checkout(package)


def capture_and_save(bpy, addon, package: str, args, values: dict, output: Path, timings: dict[str, float]) -> int:
    context = bpy.context
    extra = configure(context, addon, args, values)
    settings = context.scene.faceanything
    # Saved first, so that relative paths and the point cache can live next to the .blend; the
    # OutputGuard puts back what was there if the capture does not finish.
    context.preferences.filepaths.save_version = 0
    bpy.ops.wm.save_as_mainfile(filepath=str(output))
    try:
        addon.capture_job.start_capture(context, extra)
    except UserError as exc:
        raise CliError(exc.message, exc.hint) from None
    print(f"capturing {args.input} into {settings.capture_dir}", flush=True)
    follow_capture(addon, settings)
    if settings.status == "CANCELLED" or settings.status == "RUNNING":
        print(f"interrupted: {addon.capture_job.RESUME_HINT} Run the same command again to resume.", file=sys.stderr)
        return 130
    if settings.status == "ERROR":
        log = "".join(f"\n  | {line}" for line in settings.last_log.splitlines())
        raise CliError(settings.last_error + log, settings.last_hint)
    finished = addon.capture_job.last_capture()
    timings.update(finished.job.state.stage_seconds)
    timings["build the scene"] = finished.build_seconds
    print(f"created {settings.last_result or 'nothing'}", flush=True)
    if settings.warning_count:
        print(f"{settings.warning_count} warning(s), the last: {settings.last_warning}", flush=True)

    started = time.perf_counter()
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
