"""The runtime client against a fake runtime that speaks the real protocol: jobs run to the end,
cancel keeps a resumable capture, a killed or wrong runtime gives an error event, never a hang."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import REPO, wait_for

from faceanything_blender import runtime_paths
from faceanything_blender.runtime_client import (
    RuntimeClient,
    RuntimeJob,
    RuntimeStartError,
    runtime_environment,
    stop_all_clients,
)


def follow(job: RuntimeJob) -> RuntimeJob:
    wait_for(lambda: job.poll() is not None and job.finished, "the end of the job")
    return job


def capture_job(python: Path, output: Path) -> RuntimeJob:
    client = RuntimeClient(python, runtime_paths.runtime_source_root())
    return RuntimeJob(client, "capture_reconstruct", {"input": str(output.parent / "clip.mp4"), "output": str(output)})


def test_protocol_is_the_runtime_file():
    protocol = runtime_paths.runtime_module("protocol")
    assert Path(protocol.__file__) == REPO / "model_runtime" / "protocol.py"
    assert RuntimeClient(Path(sys.executable), REPO).protocol is protocol


def test_health_request_is_answered(fake_runtime_python):
    job = RuntimeJob(RuntimeClient(fake_runtime_python, REPO), "health", {})
    job.start()
    follow(job)
    assert job.state.status == "DONE"
    assert job.state.result["backends"] == ["mediapipe"]
    assert job.client.runtime_version == "fake"


def test_capture_reconstruct_runs_to_the_end(fake_runtime_python, tmp_path):
    job = capture_job(fake_runtime_python, tmp_path / "capture")
    job.start()
    follow(job)
    assert job.state.status == "DONE", job.state.message
    assert set(job.state.summaries) == {"capture", "reconstruct"}
    assert set(job.state.stage_seconds) == {"capture", "reconstruct"}
    assert job.state.warnings == 1 and "frame 1" in job.state.last_warning
    assert len(list((tmp_path / "capture" / "frames").glob("*.npz"))) == 6
    wait_for(lambda: not job.client.running, "the runtime's exit after the job")


def test_cancel_keeps_finished_frames_and_the_next_run_resumes(fake_runtime_python, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    job = capture_job(fake_runtime_python, tmp_path / "capture")
    job.start()
    wait_for(lambda: job.poll() and job.state.done >= 2, "two frames")
    job.cancel()
    follow(job)
    assert job.state.status == "CANCELLED"
    kept = sorted(p.name for p in (tmp_path / "capture" / "frames").glob("*.npz"))
    assert kept == ["000000.npz", "000001.npz"]

    monkeypatch.delenv("FAKE_RUNTIME_HOLD")
    again = capture_job(fake_runtime_python, tmp_path / "capture")
    again.start()
    follow(again)
    assert again.state.status == "DONE"
    computed = [line for line in again.client.stderr_tail(50) if "fake runtime: frame" in line]
    assert computed == [f"fake runtime: frame {i}" for i in range(2, 6)]


def test_a_killed_runtime_gives_an_error_event(fake_runtime_python, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    job = capture_job(fake_runtime_python, tmp_path / "capture")
    job.start()
    wait_for(lambda: job.poll() and job.state.done >= 2, "two frames")
    os.kill(job.client._process.pid, signal.SIGKILL)
    follow(job)
    assert job.state.status == "ERROR"
    assert "was killed by SIGKILL" in job.state.message and str(fake_runtime_python) in job.state.message
    assert "fake runtime: frame 1" in job.state.log_tail


def test_a_request_after_the_runtime_died_is_answered(tmp_path):
    quits = tmp_path / "quits"
    quits.write_text("#!/bin/sh\nexit 3\n")
    quits.chmod(0o755)
    client = RuntimeClient(quits, REPO)
    client.start()
    wait_for(lambda: client._output_closed, "the end of the runtime's output")
    request_id = client.send("health")
    event = client.wait_event(5.0)
    assert event["event"] == "error" and event["id"] == request_id and "exited with code 3" in event["message"]


def test_a_missing_interpreter_is_named(tmp_path):
    missing = tmp_path / "no-such-python"
    with pytest.raises(RuntimeStartError) as error:
        RuntimeClient(missing, REPO).start()
    assert str(missing) in error.value.message and "does not exist" in error.value.message
    assert "Runtime interpreter" in error.value.hint

    with pytest.raises(RuntimeStartError, match="not an executable program"):
        RuntimeClient(tmp_path, REPO).start()


def test_an_interpreter_without_the_runtime_packages_says_so(tmp_path):
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'numpy'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    job = RuntimeJob(RuntimeClient(bare, REPO), "health", {})
    job.start()
    follow(job)
    assert job.state.status == "ERROR"
    assert "exited with code 1" in job.state.message
    assert "lacks the runtime's packages" in job.state.hint
    assert job.state.log_tail == ["ModuleNotFoundError: No module named 'numpy'"]


def test_runtime_runs_without_a_shell_in_a_clean_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONHOME", "/somewhere/else")
    monkeypatch.setenv("PYTHONPATH", "/blender/modules")
    env = runtime_environment(tmp_path)
    assert "PYTHONHOME" not in env and env["PYTHONPATH"] == str(tmp_path)
    assert RuntimeClient(Path("/x/python"), REPO).argv == ["/x/python", "-m", "model_runtime", "serve"]


def test_stop_all_clients_ends_running_runtimes(fake_runtime_python, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    job = capture_job(fake_runtime_python, tmp_path / "capture")
    job.start()
    wait_for(lambda: job.poll() and job.state.done >= 2, "two frames")
    stop_all_clients(wait_s=5.0)
    assert job.client.returncode is not None
