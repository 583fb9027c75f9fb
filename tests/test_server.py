"""The runtime as a real subprocess: protocol messages, progress, cancel, shutdown; and the CLI."""
from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import REPO, sample_file
from model_runtime import protocol
from model_runtime.capture_folder import CaptureFolder
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruction_format import load_reconstruction


class RuntimeProcess:
    """`python -m model_runtime serve` with its events read on a thread."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "model_runtime", "serve"], cwd=REPO, text=True, encoding="utf-8",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.events.put(protocol.decode_event(line))
        self.events.put(None)

    def send(self, kind, request_id=None, **fields):
        self.process.stdin.write(protocol.request(kind, request_id, **fields))
        self.process.stdin.flush()

    def next_event(self, timeout=120):
        return self.events.get(timeout=timeout)

    def until(self, *kinds, timeout=120):
        seen = []
        while True:
            message = self.next_event(timeout)
            assert message is not None, f"runtime ended early; events: {seen}; stderr: {self.process.stderr.read()}"
            seen.append(message)
            if message["event"] in kinds:
                return message, seen

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


@pytest.fixture
def runtime():
    process = RuntimeProcess()
    yield process
    process.close()
    process.process.kill()


def test_ready_then_health_lists_backends_and_devices(runtime):
    ready = runtime.next_event()
    assert ready["event"] == "ready" and ready["version"]
    runtime.send("health", "h1")
    health, _ = runtime.until("health")
    assert health["id"] == "h1"
    assert "mediapipe" in health["backends"]
    assert health["devices"][0]["name"] == "cpu"
    assert health["packages"]["mediapipe"] == "0.10.14"


def test_capture_streams_started_progress_finished(runtime, face_clip, tmp_path):
    runtime.send("capture", "c1", input=str(face_clip), output=str(tmp_path / "cap"), frames="0:12")
    finished, seen = runtime.until("finished", "error")
    assert finished["event"] == "finished", finished
    kinds = [m["event"] for m in seen]
    assert kinds[0] == "ready" and "started" in kinds
    progress = [m for m in seen if m["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 12
    assert all(m["id"] == "c1" for m in seen[1:])
    assert finished["summary"]["frames_with_face"] == 12


def test_capture_and_reconstruct_in_one_request(runtime, face_clip, tmp_path):
    output = tmp_path / "cap"
    runtime.send("capture_reconstruct", "r1", input=str(face_clip), output=str(output), frames="0:24", density="low")
    started = []
    while True:
        message, seen = runtime.until("started", "finished", "error")
        assert message["event"] != "error", message
        if message["event"] == "started":
            started.append(message)
        elif message["stage"] == "reconstruct":
            break
    assert [(m["stage"], m["total"]) for m in started] == [("capture", None), ("reconstruct", 24)]
    served = load_reconstruction(message["summary"]["reconstruction_dir"], memory_map=False)
    here = load_reconstruction(reconstruct(output, ReconstructOptions(density="low")), memory_map=False)
    np.testing.assert_array_equal(served.vertices, here.vertices)


def test_cancel_stops_within_a_frame_and_leaves_a_resumable_capture(runtime, face_clip, tmp_path):
    frames_dir = tmp_path / "cap" / "frames"
    runtime.send("capture", "c1", input=str(face_clip), output=str(tmp_path / "cap"))
    runtime.until("progress")
    written_before_cancel = len(list(frames_dir.glob("*.npz")))
    runtime.send("cancel", "x")
    cancelled, _ = runtime.until("cancelled", "finished")
    assert cancelled["event"] == "cancelled"
    finished = CaptureFolder(tmp_path / "cap").finished_indices()
    assert 0 < len(finished) < 72
    # The frame being predicted and the one being written may finish; nothing after them.
    assert len(finished) - written_before_cancel <= 3
    runtime.send("capture", "c2", input=str(face_clip), output=str(tmp_path / "cap"))
    resumed, _ = runtime.until("finished", "error")
    assert resumed["event"] == "finished", resumed
    assert resumed["summary"]["computed"] == 72 - len(finished)


def test_bad_input_is_an_error_event_with_a_hint(runtime, tmp_path):
    runtime.send("capture", "c1", input=str(tmp_path / "missing.mov"), output=str(tmp_path / "cap"))
    error, _ = runtime.until("error")
    assert error["id"] == "c1" and error["code"] == "bad_input"
    assert "missing.mov" in error["message"] and error["hint"]


def test_malformed_request_is_answered_and_the_server_goes_on(runtime):
    runtime.process.stdin.write("{not json\n")
    runtime.process.stdin.write(json.dumps({"type": "capture", "id": "c"}) + "\n")
    runtime.process.stdin.flush()
    first, _ = runtime.until("error")
    second, _ = runtime.until("error")
    assert first["code"] == second["code"] == "bad_request"
    assert "lacks input, output" in second["message"]
    runtime.send("health", "h")
    assert runtime.until("health")[0]["id"] == "h"


@pytest.mark.parametrize("line, expected_id, says", [
    (b'{"type": "health", "id": "x\xff"}\n', None, "UTF-8"),
    (b"\xc3\x28\n", None, "UTF-8"),
    (b"[" * 1000 + b"]" * 1000 + b"\n", None, "JSON"),
    (b'{"type": "health", "id": ' + b"[" * 1000 + b"]" * 1000 + b"}\n", None, "JSON"),
    (b'{"type": "capture", "id": "w", "input": 123, "output": "out"}\n', "w", "input"),
    (b'{"type": "capture", "id": "f", "input": "a.mp4", "output": "out", "frames": 5}\n', "f", "frames"),
    (b'{"type": "health", "id": NaN}\n', None, "NaN"),
    (b'{"type": "health", "id": 1.5}\n', None, "id"),
    (b'{"type": "health", "id": "d", "id": Infinity}\n', None, "Infinity"),
])
def test_every_malformed_line_gets_bad_request_and_the_server_keeps_answering(runtime, line, expected_id, says):
    assert runtime.next_event()["event"] == "ready"
    runtime.process.stdin.flush()
    runtime.process.stdin.buffer.write(line)
    runtime.process.stdin.buffer.flush()
    error, _ = runtime.until("error")
    assert (error["code"], error["id"]) == ("bad_request", expected_id), error
    assert says in error["message"] and error["hint"]
    runtime.send("health", "after")
    assert runtime.until("health")[0]["id"] == "after"
    assert runtime.process.poll() is None


def test_a_bad_line_while_a_job_runs_leaves_the_job_running(runtime, tmp_path):
    runtime.send("capture", "c", input=str(sample_file("single_face.mp4")), output=str(tmp_path / "cap"))
    runtime.until("progress")
    runtime.process.stdin.buffer.write(b"\xff\n")
    runtime.process.stdin.buffer.flush()
    message, seen = runtime.until("finished", "cancelled")
    assert message["event"] == "finished" and message["id"] == "c"
    assert [m["code"] for m in seen if m["event"] == "error"] == ["bad_request"]


def test_end_of_stdin_shuts_down(runtime):
    runtime.next_event()
    runtime.process.stdin.close()
    assert runtime.process.wait(timeout=30) == 0


def test_protocol_rejects_unknown_fields_and_types():
    with pytest.raises(protocol.ProtocolError, match="unknown request type"):
        protocol.parse_request('{"type": "explode"}')
    with pytest.raises(protocol.ProtocolError, match="unknown fields: colour"):
        protocol.parse_request('{"type": "health", "colour": 1}')
    with pytest.raises(ValueError, match="lacks hint"):
        protocol.event("error", "x", code="c", message="m")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "model_runtime", *args], cwd=REPO, capture_output=True, text=True, env=env)


NATIVE_CHATTER = ("TensorFlow Lite", "absl", "W0000", "GetPrototype", "inference_feedback_manager")


def test_cli_capture_shows_only_the_projects_messages_and_logs_native_output(tmp_path):
    env = {**os.environ, "FACEANYTHING_LOG": str(tmp_path / "runtime.log")}
    quiet = run_cli("capture", str(sample_file("single_face.mp4")), "-o", str(tmp_path / "a"), "--frames", "0:3", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert [text for text in NATIVE_CHATTER if text in quiet.stderr] == []
    assert "capture:" in quiet.stderr  # the progress bar stays
    assert "TensorFlow Lite" in (tmp_path / "runtime.log").read_text()
    verbose = run_cli("capture", str(sample_file("single_face.mp4")), "-o", str(tmp_path / "b"), "--frames", "0:3",
                      "--verbose", env=env)
    assert verbose.returncode == 0 and "TensorFlow Lite" in verbose.stderr


def test_cli_capture_prints_a_summary_line(face_clip, tmp_path):
    result = run_cli("capture", str(face_clip), "-o", str(tmp_path / "cap"), "--frames", "0:5")
    assert result.returncode == 0, result.stderr
    assert "5 frames, 5 with a face" in result.stdout


@pytest.mark.parametrize("make_input, expected", [
    (lambda tmp: tmp / "absent.mp4", "absent.mp4"),
    (lambda tmp: (tmp / "empty folder").mkdir() or tmp / "empty folder", "empty folder"),
])
def test_cli_bad_input_is_one_message_not_a_traceback(tmp_path, make_input, expected):
    result = run_cli("capture", str(make_input(tmp_path)), "-o", str(tmp_path / "cap"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr and "hint:" in result.stderr


def test_a_job_request_sent_on_hearing_the_last_event_is_not_refused_as_busy(monkeypatch):
    from model_runtime.server import Server

    out = io.StringIO()
    server = Server(io.StringIO(), out)
    lingering = threading.Event()
    send_last = server._send_last

    def send_then_linger(*args, **fields):  # the job's thread is slow to return after its last event
        send_last(*args, **fields)
        lingering.wait(10)

    monkeypatch.setattr(server, "capture", lambda message, progress: {"frames": 1})
    monkeypatch.setattr(server, "_send_last", send_then_linger)
    server.handle({"type": "capture", "id": "first"})
    while '"finished"' not in out.getvalue():
        time.sleep(0.01)
    assert server.job.is_alive()
    server.handle({"type": "capture", "id": "second"})
    lingering.set()
    server.job.join(10)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(event["event"], event["id"]) for event in events] == [("finished", "first"), ("finished", "second")]
