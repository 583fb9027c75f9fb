"""The panel's asynchronous path with the real runtime subprocess on a GRID clip: to the end
(real reconstruction, real scene builder), cancel and resume, a killed runtime, Check runtime."""
from __future__ import annotations

from pathlib import Path

import bpy
import pytest
from conftest import pump_until_done, wait_for


@pytest.fixture
def real_settings(addon, scene, real_runtime_python, grid_clip):
    addon.runtime_paths.get_preferences().runtime_python = str(real_runtime_python)
    settings = scene.faceanything
    settings.footage_file = str(grid_clip)
    settings.use_frame_range = True
    return settings


def capture_frames(settings, first: int, last: int) -> None:
    settings.frame_first, settings.frame_last = first, last
    assert bpy.ops.faceanything.capture() == {"FINISHED"}


def test_capture_runs_to_the_end_and_builds_the_scene(addon, scene, real_settings):
    capture_frames(real_settings, 1, 12)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", f"{real_settings.last_error}\n{real_settings.last_log}"
    finished = addon.capture_job.last_capture()
    assert finished.job.state.summaries["capture"]["frames"] == 12
    assert set(finished.job.state.stage_seconds) == {"capture", "reconstruct"}
    capture_dir = Path(real_settings.capture_dir)
    assert (capture_dir / "manifest.json").is_file() and (capture_dir / "reconstruction" / "header.json").is_file()
    made = addon.scene_writer.created_objects(finished.built)
    assert made and all(name in scene.objects for name in made)
    assert real_settings.last_result.startswith(made[0])


def test_cancel_mid_run_leaves_a_capture_that_resumes(addon, scene, real_settings):
    capture_frames(real_settings, 1, 60)
    wait_for(lambda: addon.capture_job.pump_capture() and real_settings.frames_done >= 3, "three captured frames")
    bpy.ops.faceanything.cancel()
    pump_until_done(addon.capture_job)
    assert real_settings.status == "CANCELLED", real_settings.last_error
    frames = Path(real_settings.capture_dir) / "frames"
    kept = len(list(frames.glob("*.npz")))
    assert 3 <= kept < 60

    capture_frames(real_settings, 1, 60)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    summary = addon.capture_job.last_capture().job.state.summaries["capture"]
    assert summary["frames"] == 60 and summary["computed"] == 60 - kept


def test_a_killed_runtime_ends_the_capture_with_an_error(addon, scene, real_settings):
    capture_frames(real_settings, 1, 60)
    wait_for(lambda: addon.capture_job.pump_capture() and real_settings.frames_done >= 2, "two captured frames")
    addon.capture_job._capture.job.client.kill()
    pump_until_done(addon.capture_job)
    assert real_settings.status == "ERROR"
    assert "was killed by SIGKILL" in real_settings.last_error
    assert "resume" in real_settings.last_hint


def test_check_runtime_shows_versions_backends_and_devices(addon, scene, real_runtime_python):
    addon.runtime_paths.get_preferences().runtime_python = str(real_runtime_python)
    assert bpy.ops.faceanything.check_runtime() == {"FINISHED"}
    wait_for(lambda: addon.runtime_tasks.pump_runtime_tasks() is None, "the health answer")
    report = addon.runtime_tasks.health_job().state.result
    assert addon.runtime_tasks.health_job().state.status == "DONE"
    assert {"mediapipe", "faceanything"} <= set(report["backends"])
    assert report["python"].startswith("3.11") and report["devices"][0]["name"] == "cpu"
