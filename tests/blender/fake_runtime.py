"""A stand-in for `python -m model_runtime serve` that speaks the real protocol.py.

It runs without the runtime's heavy packages, in well under a second, and can be told to fail in
the ways the extension must survive. Tests start it through a small executable wrapper that
ignores the ``-m model_runtime serve`` arguments the extension passes.

Environment:
    FAKE_RUNTIME_FRAMES   frames per capture (default 6)
    FAKE_RUNTIME_DELAY    seconds per frame (default 0.01)
    FAKE_RUNTIME_HOLD     path of a file: the capture waits at frame 2 until the file exists
                          (lets a test act mid-run without timing)
    FAKE_RUNTIME_FAIL     if set, the capture answers with an error event of this code

Like the real runtime it writes a capture folder (manifest.json, frames/NNNNNN.npz written
whole) and resumes it, computing only missing frames.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from model_runtime import protocol  # noqa: E402 - standard library only, like the extension's copy

_write_lock = threading.Lock()
cancel_requested = threading.Event()


def send(kind: str, request_id, **fields) -> None:
    with _write_lock:
        sys.stdout.write(protocol.encode(protocol.event(kind, request_id, **fields)))
        sys.stdout.flush()


def log(text: str) -> None:
    print(f"fake runtime: {text}", file=sys.stderr, flush=True)


def run_job(message: dict) -> None:
    request_id = message["id"]
    fail = os.environ.get("FAKE_RUNTIME_FAIL")
    if fail:
        send("error", request_id, code=fail, message=f"{message['input']} cannot be read", hint="Pick another file.")
        return
    output = Path(message["output"])
    frames = output / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    total = int(os.environ.get("FAKE_RUNTIME_FRAMES", "6"))
    (output / "manifest.json").write_text(json.dumps({"format": "faceanything-capture", "request": message}))
    delay = float(os.environ.get("FAKE_RUNTIME_DELAY", "0.01"))
    hold = os.environ.get("FAKE_RUNTIME_HOLD")
    send("started", request_id, stage="capture", total=total, capture_dir=str(output))
    for index in range(total):
        if hold and index == 2:
            while not Path(hold).exists() and not cancel_requested.is_set():
                time.sleep(0.01)
        if cancel_requested.is_set():
            send("cancelled", request_id, stage="capture", done=index)
            return
        path = frames / f"{index:06d}.npz"
        if not path.exists():
            time.sleep(delay)
            path.with_suffix(".tmp").write_bytes(b"frame")
            path.with_suffix(".tmp").replace(path)
            log(f"frame {index}")
        if index == 1:
            send("warning", request_id, code="no_face", message="no face found in frame 1", frame=1)
        send("progress", request_id, stage="capture", done=index + 1, total=total, fps=50.0, eta_s=0.1)
    send("finished", request_id, stage="capture", summary={"frames": total})
    if message["type"] == "capture_reconstruct":
        send("started", request_id, stage="reconstruct", total=None, capture_dir=str(output))
        (output / "reconstruction").mkdir(exist_ok=True)
        (output / "reconstruction" / "header.json").write_text(json.dumps({"frame_count": total}))
        summary = {"reconstruction_dir": str(output / "reconstruction")}
        send("finished", request_id, stage="reconstruct", summary=summary)


def main() -> int:
    send("ready", None, version="fake", protocol=protocol.PROTOCOL_VERSION)
    job = None
    for line in sys.stdin:
        if not line.strip():
            continue
        message = protocol.parse_request(line)
        if message["type"] == "shutdown":
            break
        if message["type"] == "cancel":
            cancel_requested.set()
        elif message["type"] == "health":
            send(
                "health", message["id"], version="fake", python=sys.version.split()[0],
                backends=["mediapipe"], devices=[{"name": "cpu", "description": "test"}], packages={"numpy": None},
            )
        else:
            cancel_requested.clear()
            job = threading.Thread(target=run_job, args=(message,))
            job.start()
    cancel_requested.set()
    if job is not None:
        job.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
