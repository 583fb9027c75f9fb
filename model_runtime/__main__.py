"""Command line: `python -m model_runtime {capture,reconstruct,export,convert,serve,health}`.

Failures the user can fix print one message and a hint on stderr (exit status 2); Ctrl-C keeps
the finished frames and says how to resume (exit status 130). What native libraries print
(TensorFlow Lite, absl, protobuf's deprecation warnings) goes to the runtime log
(`runtime_log_path`), not to the terminal, unless ``--verbose`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator

from . import option_schema
from .errors import Cancelled, UserError
from .option_schema import CAPTURE, EXPORT, RECONSTRUCT


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with native_output_to_log(getattr(args, "verbose", True)):
            return args.run(args)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("\ninterrupted: finished frames are kept; run the same command again to resume.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_runtime", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    capture = commands.add_parser("capture", help="footage -> capture folder of per-frame maps")
    capture.add_argument("input", help="a video file, a folder of images (a sequence), or one image")
    capture.add_argument("-o", "--output", required=True, help="capture folder to write (resumed if it exists)")
    option_schema.add_arguments(capture, CAPTURE)
    capture.add_argument("--reconstruct", action="store_true", help="reconstruct right after capturing")
    option_schema.add_arguments(capture, RECONSTRUCT)
    capture.set_defaults(run=run_capture_command)

    reconstruct = commands.add_parser("reconstruct", help="capture folder -> animated mesh, points, head pose")
    reconstruct.add_argument("capture_dir")
    option_schema.add_arguments(reconstruct, RECONSTRUCT)
    reconstruct.set_defaults(run=run_reconstruct_command)

    export = commands.add_parser("export", help="reconstruction -> CSV point tracks, Live Link Face CSV or a mesh file")
    export.add_argument("capture_dir")
    option_schema.add_arguments(export, EXPORT)
    export.set_defaults(run=run_export_command)

    convert = commands.add_parser("convert", help="Face Anything checkpoint.pt -> safetensors (once)")
    convert.add_argument("checkpoint", help="the released checkpoint.pt (or a .safetensors to re-convert)")
    convert.add_argument("output", help="the .safetensors to write")
    convert.add_argument("--size", choices=("small", "base", "large", "giant"), help="default: the weights' own size")
    convert.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                         help="the stored weights' type (default: float16)")
    convert.set_defaults(run=run_convert_command)

    serve = commands.add_parser("serve", help="newline-delimited JSON on stdin/stdout (see protocol.py)")
    serve.set_defaults(run=lambda args: __import__("model_runtime.server", fromlist=["serve"]).serve())

    health = commands.add_parser("health", help="versions, backends and devices as JSON")
    health.set_defaults(run=run_health_command)
    for command in (capture, reconstruct, export, convert, health):
        command.add_argument("--verbose", action="store_true",
                             help="show what native libraries print (by default it goes to the runtime log)")
    return parser


def runtime_log_path() -> Path:
    """Where native output goes: $FACEANYTHING_LOG, else faceanything/runtime.log in the user's cache folder."""
    if os.environ.get("FACEANYTHING_LOG"):
        return Path(os.environ["FACEANYTHING_LOG"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "faceanything" / "runtime.log"


@contextlib.contextmanager
def native_output_to_log(verbose: bool) -> Iterator[None]:
    """Point file descriptor 2 (where native code writes) and Python's warnings at the runtime
    log; the project's own messages keep the terminal through `sys.stderr`. Without a writable
    log, everything stays on the terminal."""
    if verbose:
        yield
        return
    try:
        path = runtime_log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a", encoding="utf-8", errors="replace")
    except OSError:
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    user_stream, show_warning = sys.stderr, warnings.showwarning
    with log, open(terminal, "w", encoding=sys.stderr.encoding, errors="replace", buffering=1) as terminal_stream:
        log.write(f"--- {' '.join(sys.argv)} (process {os.getpid()})\n")
        log.flush()
        os.dup2(log.fileno(), 2)
        sys.stderr = terminal_stream
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        try:
            yield
        finally:
            terminal_stream.flush()
            log.flush()
            os.dup2(terminal, 2)
            sys.stderr, warnings.showwarning = user_stream, show_warning


def progress_bar(label: str):
    """A tqdm bar on stderr driven by (done, total) callbacks."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done - 1, desc=label, unit="frame", file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def run_capture_command(args: argparse.Namespace) -> int:
    from .capture import CaptureOptions, run_capture

    options = CaptureOptions(**option_schema.values_from_arguments(args, CAPTURE))
    warnings: list[str] = []
    summary = run_capture(
        args.input, args.output, options, progress=progress_bar("capture"),
        warn=lambda frame, code, text: warnings.append(text),
    )
    for text in warnings[:10]:
        print(f"warning: {text}", file=sys.stderr)
    if len(warnings) > 10:
        print(f"warning: ... and {len(warnings) - 10} more", file=sys.stderr)
    print(summary.line())
    if args.reconstruct:
        args.capture_dir = args.output
        return run_reconstruct_command(args)
    return 0


def run_reconstruct_command(args: argparse.Namespace) -> int:
    from .reconstruct import ReconstructOptions, reconstruct

    options = ReconstructOptions(**option_schema.values_from_arguments(args, RECONSTRUCT))
    folder = reconstruct(args.capture_dir, options, progress=progress_bar("reconstruct"))
    print(f"reconstruction -> {folder}")
    return 0


def run_export_command(args: argparse.Namespace) -> int:
    from .reconstruct.export import export_files

    options = option_schema.validate(option_schema.values_from_arguments(args, EXPORT), (EXPORT,))
    for path in export_files(args.capture_dir, options):
        print(f"wrote {path}")
    return 0


def run_convert_command(args: argparse.Namespace) -> int:
    from .network.checkpoint import run_convert

    return run_convert(args)


def run_health_command(args: argparse.Namespace) -> int:
    from .health import health_report

    print(json.dumps(health_report(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
