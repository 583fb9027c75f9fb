"""Fault injection on real footage: capture, reconstruct and the server are killed (SIGKILL) at
several points. Nothing finished is lost, nothing is left running or in shared memory, and the
resumed result equals an uninterrupted one (tracks and vertices), with the appearance stage on
and off."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, sample_file
from model_runtime import protocol
from model_runtime.capture import CaptureOptions, run_capture
from model_runtime.capture_folder import CaptureFolder
from model_runtime.reconstruct import ReconstructOptions, reconstruct
from model_runtime.reconstruction_format import load_reconstruction

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="lists processes through Linux's /proc")

KILL_AFTER_FRAMES = (1, 24, 50)
"""Finished frames on disk when each successive run of the same capture is killed (of 72)."""
MAX_PIXELS, MAX_METRES = 0.05, 0.05e-3
APPEARANCE = {"on": [], "off": ["--backend-option", "appearance=false"]}


def capture_options(appearance: str) -> CaptureOptions:
    return CaptureOptions(backend_options={} if appearance == "on" else {"appearance": False})


def runtime(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "model_runtime", *args], cwd=REPO, **popen)


def finished_frames(capture_dir: Path) -> list[int]:
    frames = capture_dir / "frames"
    return sorted(int(path.stem) for path in frames.glob("[0-9]*.npz")) if frames.is_dir() else []


def kill_when(process: subprocess.Popen, ready, what: str) -> None:
    """SIGKILL `process` once `ready()` holds; checks it was still running and left no process behind."""
    deadline = time.monotonic() + 120
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, f"{what} ended before it could be killed"
    kids = children(process.pid)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert [pid for pid in kids if Path(f"/proc/{pid}").exists()] == [], f"{what} left processes running"


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def shared_memory() -> set[str]:
    return {path.name for path in Path("/dev/shm").iterdir()} if Path("/dev/shm").is_dir() else set()


def assert_same_reconstruction(clean: Path, resumed: Path, label: str) -> tuple[float, float]:
    """Max differences of point pixels (px) and vertices (m) between two reconstructions; both checked."""
    a, b = load_reconstruction(clean, memory_map=False), load_reconstruction(resumed, memory_map=False)
    pixels = float(np.abs(a.point_pixels - b.point_pixels).max())
    metres = float(np.abs(a.vertices - b.vertices).max())
    np.testing.assert_array_equal(a.point_visible, b.point_visible, err_msg=label)
    assert pixels <= MAX_PIXELS and metres <= MAX_METRES, f"{label}: tracks {pixels:.4f} px, vertices {metres * 1e3:.4f} mm"
    print(f"{label}: tracks differ by {pixels:.4f} px at most, vertices by {metres * 1e3:.4f} mm")
    return pixels, metres


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Uninterrupted captures and reconstructions of the sample clip, appearance stage on and off."""
    folders = {}
    for appearance in APPEARANCE:
        folder = tmp_path_factory.mktemp(f"clean-{appearance}") / "cap"
        run_capture(sample_file("single_face.mp4"), folder, capture_options(appearance))
        reconstruct(folder, ReconstructOptions(density="low"))
        folders[appearance] = folder
    return folders


@pytest.mark.parametrize("appearance", APPEARANCE)
def test_a_capture_killed_again_and_again_resumes_to_the_clean_result(clean, tmp_path, appearance):
    clip, capture_dir = sample_file("single_face.mp4"), tmp_path / "cap"
    memory_before = shared_memory()
    for kill_after in KILL_AFTER_FRAMES:
        before = finished_frames(capture_dir)
        process = runtime("capture", str(clip), "-o", str(capture_dir), *APPEARANCE[appearance],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(process, lambda: len(finished_frames(capture_dir)) >= kill_after, f"capture (kill at {kill_after})")
        after = finished_frames(capture_dir)
        assert set(before) <= set(after) and len(after) < 72, "a finished frame was lost, or nothing was left to do"
        CaptureFolder(capture_dir).frame(after[-1])  # every frame on disk is whole
    run_capture(clip, capture_dir, capture_options(appearance))
    assert shared_memory() <= memory_before
    for index in range(72):
        np.testing.assert_array_equal(CaptureFolder(capture_dir).frame(index).landmarks2d,
                                      CaptureFolder(clean[appearance]).frame(index).landmarks2d,
                                      err_msg=f"frame {index}")
    reconstruct(capture_dir, ReconstructOptions(density="low"))
    assert_same_reconstruction(clean[appearance] / "reconstruction", capture_dir / "reconstruction",
                               f"capture killed at {KILL_AFTER_FRAMES} frames, appearance {appearance}")


def test_a_reconstruct_killed_at_several_points_leaves_nothing_and_the_next_run_equals_the_clean_one(clean, tmp_path):
    capture_dir = tmp_path / "cap"
    shutil.copytree(clean["on"], capture_dir)
    shutil.rmtree(capture_dir / "reconstruction")
    memory_before = shared_memory()
    for delay in (0.0, 0.5):
        process = runtime("reconstruct", str(capture_dir), "--density", "low", "--mesh", "dense",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = []

        def working() -> bool:
            if not started and list(capture_dir.glob(".reconstruction.partial-*")):
                started.append(time.monotonic())
            return bool(started) and time.monotonic() - started[0] >= delay

        kill_when(process, working, f"reconstruct (killed {delay} s into its work)")
        assert list(capture_dir.glob(".reconstruction.partial-*")), "killed after it finished"
    assert shared_memory() <= memory_before
    reconstruct(capture_dir, ReconstructOptions(density="low"))
    assert [path.name for path in capture_dir.iterdir() if path.name.startswith(".")] == []
    assert_same_reconstruction(clean["on"] / "reconstruction", capture_dir / "reconstruction", "reconstruct killed twice")


def test_a_killed_server_keeps_finished_frames_and_a_new_one_resumes_to_the_clean_result(clean, tmp_path):
    clip, capture_dir = sample_file("single_face.mp4"), tmp_path / "cap"
    memory_before = shared_memory()
    for kill_after in (10, 40):
        before = finished_frames(capture_dir)
        server = runtime("serve", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server.stdin.write(protocol.request("capture", "c", input=str(clip), output=str(capture_dir)).encode())
        server.stdin.flush()
        kill_when(server, lambda: len(finished_frames(capture_dir)) >= kill_after, f"serve (kill at {kill_after})")
        server.stdin.close()
        assert set(before) <= set(finished_frames(capture_dir))
    assert shared_memory() <= memory_before
    server = runtime("serve", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdin.write(protocol.request("capture_reconstruct", "r", input=str(clip), output=str(capture_dir), density="low"))
    server.stdin.flush()  # kept open: the end of stdin would cancel the job
    ends = []
    for line in server.stdout:
        event = json.loads(line)
        if event["event"] in ("finished", "error", "cancelled"):
            ends.append(event)
            if event["event"] != "finished" or event["stage"] == "reconstruct":
                break
    server.stdin.close()
    assert server.wait(timeout=60) == 0
    assert [(event["event"], event["stage"]) for event in ends] == [("finished", "capture"), ("finished", "reconstruct")], ends
    assert_same_reconstruction(clean["on"] / "reconstruction", capture_dir / "reconstruction", "server killed twice")
    assert sorted(os.listdir(capture_dir / "frames")) == [f"{index:06d}.npz" for index in range(72)]
