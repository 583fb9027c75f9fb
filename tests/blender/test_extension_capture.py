"""The panel's capture path in a real bpy, against the fake runtime: the capture operator, the
timer function that applies the runtime's events, cancel and resume, failures in plain words,
the scene builder called on the main thread, and the panel drawn in every state.

The fake runtime writes no real reconstruction, so the scene builder is replaced by a recorder
here; test_extension_real_runtime.py runs the real one.
"""
from __future__ import annotations

from pathlib import Path

import os
import subprocess
import sys
import threading
import types
from types import SimpleNamespace

import bpy
import pytest
from conftest import REPO, RecordingLayout, pump_until_done, texts, wait_for


@pytest.fixture
def footage(tmp_path):
    video = tmp_path / "talking head.mp4"
    video.write_bytes(b"not decoded by the fake runtime")
    return video


@pytest.fixture
def builder(addon, monkeypatch):
    """Stands in for `scene.build_from_capture`: records its calls (and their thread) and makes
    three empties, returning their names the way the real builder does, with one warning."""
    calls = []

    def build_from_capture(context, capture_dir, *, footage, animation, name=None):
        made = []
        for object_name in ("FA_face", "FA_camera", "FA_nose_tip"):
            obj = bpy.data.objects.new(object_name, None)
            context.scene.collection.objects.link(obj)
            made.append(obj.name)
        calls.append(dict(scene=context.scene.name, capture_dir=capture_dir, footage=footage, animation=animation,
                          name=name, made=made, main_thread=threading.current_thread() is threading.main_thread()))
        return {"mesh": made[0], "camera": made[1], "points": {"nose_tip": made[2]}, "animation": animation,
                "frame_start": 1, "warnings": ["footage not found; the camera has no background"]}

    module = types.ModuleType(f"{addon.__name__}.scene")
    module.build_from_capture = build_from_capture
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(addon, "scene", module, raising=False)
    return calls


@pytest.fixture
def settings(addon, scene, footage, fake_runtime_python):
    addon.runtime_paths.get_preferences().runtime_python = str(fake_runtime_python)
    scene.faceanything.footage_file = str(footage)
    return scene.faceanything


class PreferencesWithLayout:
    """The add-on's preferences as their draw() sees them, with a recording layout."""

    def __init__(self, preferences, layout):
        self.preferences = preferences
        self.layout = layout

    def __getattr__(self, name):
        return getattr(self.preferences, name)


def draw_panel(addon) -> list:
    calls = []
    addon.ui.FACEANYTHING_PT_capture.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    return calls


def test_capture_runs_to_the_end_and_builds_on_the_main_thread(addon, scene, settings, builder, footage):
    settings.animation = "SHAPE_KEYS"
    assert bpy.ops.faceanything.capture() == {"FINISHED"}
    assert addon.capture_job.is_capturing() and settings.status == "RUNNING"
    pump_until_done(addon.capture_job)
    assert settings.status == "DONE", settings.last_error
    [call] = builder
    assert settings.last_result == ", ".join(call["made"])
    assert settings.warning_count == 2 and settings.last_warning.startswith("footage not found")
    assert call["main_thread"] and call["scene"] == scene.name
    assert call["footage"] == str(footage) and call["animation"] == "SHAPE_KEYS"
    assert str(call["capture_dir"]) == settings.capture_dir
    assert (call["capture_dir"] / "reconstruction" / "header.json").is_file()
    assert not addon.capture_job.is_capturing()


def test_capture_folder_is_in_the_cache_and_keyed_by_the_footage(addon, scene, settings, builder, tmp_path):
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    first = settings.capture_dir
    assert first.startswith(str(tmp_path / "cache" / "talking_head-"))
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert settings.capture_dir == first
    settings.frames = "1:3"
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert settings.capture_dir != first


def test_request_follows_the_panel_settings(addon, scene, settings):
    settings.frames, settings.focal = "11:20:2", "28mm/23.5"
    settings.mesh, settings.density, settings.smooth = "dense", "low", "off"
    settings.points = "nose_tip 0.01,0.02,0.03"
    settings.rest_frames = "11:15"
    preferences = addon.runtime_paths.get_preferences()
    options = addon.capture_request.option_values(settings, preferences)
    fields = addon.capture_request.capture_fields(Path("/in.mp4"), Path("/out"), options)
    assert fields == {
        "input": "/in.mp4", "output": "/out", "frames": "11:20:2", "focal": "28mm/23.5", "backend": "mediapipe",
        "still_images": False, "device": "auto", "checkpoint": None, "backend_options": {}, "overwrite": True,
        "mesh": "dense", "density": "low", "smooth": "off", "points": ["nose_tip", "0.01,0.02,0.03"],
        "reference_frame": None, "radius": 0.002, "appearance": True, "neutral_frame": None,
        "rest_frames": "11:15",
    }
    addon.runtime_paths.runtime_module("protocol").request("capture_reconstruct", "r1", **fields)  # the runtime accepts it


def test_a_setting_the_runtime_refuses_is_reported_with_its_message(addon, scene, settings, footage):
    settings.focal = "28 inches"
    with pytest.raises(RuntimeError, match="28 inches"):  # the operator reports the error
        bpy.ops.faceanything.capture()
    assert settings.status == "ERROR" and "28 inches" in settings.last_error
    assert "35mm/23.5" in settings.last_hint


def test_cancel_keeps_the_capture_and_capture_resumes_it(addon, scene, settings, builder, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    bpy.ops.faceanything.capture()
    wait_for(lambda: addon.capture_job.pump_capture() and settings.frames_done >= 2, "two frames")
    assert bpy.ops.faceanything.cancel() == {"FINISHED"}
    pump_until_done(addon.capture_job)
    assert settings.status == "CANCELLED" and "resume" in settings.last_hint
    assert builder == []
    folder = settings.capture_dir

    monkeypatch.delenv("FAKE_RUNTIME_HOLD")
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert settings.status == "DONE" and settings.capture_dir == folder
    log = (tmp_path / "cache" / "logs" / f"{Path(folder).name}.log").read_text()
    assert log.count("fake runtime: frame 0") == 1 and log.count("fake runtime: frame 5") == 1


def test_a_killed_runtime_shows_its_last_messages(addon, scene, settings, builder, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    bpy.ops.faceanything.capture()
    wait_for(lambda: addon.capture_job.pump_capture() and settings.frames_done >= 2, "two frames")
    addon.capture_job._capture.job.client._process.kill()
    pump_until_done(addon.capture_job)
    assert settings.status == "ERROR"
    assert "was killed by SIGKILL" in settings.last_error
    assert "fake runtime: frame 1" in settings.last_log
    assert "Press Capture to resume" in settings.last_hint
    assert builder == []


def test_a_wrong_interpreter_path_is_reported(addon, scene, settings, tmp_path):
    addon.runtime_paths.get_preferences().runtime_python = str(tmp_path / "python3.11")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.faceanything.capture()
    assert settings.status == "ERROR"
    assert str(tmp_path / "python3.11") in settings.last_error
    assert not addon.capture_job.is_capturing()


def test_missing_footage_is_reported(addon, scene, settings, tmp_path):
    settings.footage_file = str(tmp_path / "gone.mp4")
    with pytest.raises(RuntimeError, match="gone.mp4 does not exist"):
        bpy.ops.faceanything.capture()
    settings.footage_source = "CLIP"
    with pytest.raises(RuntimeError, match="No movie clip"):
        bpy.ops.faceanything.capture()


def test_a_runtime_error_reaches_the_panel_in_plain_words(addon, scene, settings, builder, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_FAIL", "bad_input")
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert settings.status == "ERROR"
    assert settings.last_error.endswith("talking head.mp4 cannot be read")
    assert settings.last_hint.startswith("Pick another file.")


def test_a_failed_scene_build_keeps_the_capture(addon, scene, settings, builder, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("no mesh in the reconstruction")

    monkeypatch.setattr(addon.scene, "build_from_capture", broken)
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert settings.status == "ERROR"
    assert settings.last_error == "Building the Blender scene failed: no mesh in the reconstruction"
    assert settings.capture_dir in settings.last_hint


def test_loading_another_file_stops_the_capture(addon, scene, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    bpy.ops.faceanything.capture()
    client = addon.capture_job._capture.job.client
    addon.cancel_capture_on_load(None)
    assert not addon.capture_job.is_capturing()
    assert not bpy.app.timers.is_registered(addon.capture_job.pump_capture)
    wait_for(lambda: not client.running, "the runtime's exit")


def test_panel_draws_in_every_state(addon, scene, settings, builder, tmp_path, monkeypatch):
    idle = draw_panel(addon)
    assert [args["property"] for name, args in idle if name == "prop"][:2] == ["footage_source", "footage_file"]
    assert ("operator", {"operator": "faceanything.capture", "text": "Capture", "icon": "REC"}) in idle

    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    bpy.ops.faceanything.capture()
    wait_for(lambda: addon.capture_job.pump_capture() and settings.frames_done >= 2, "two frames")
    running = draw_panel(addon)
    [progress] = [args for name, args in running if name == "progress"]
    assert progress["type"] == "BAR" and progress["factor"] == pytest.approx(2 / 6)
    assert progress["text"].startswith("Capture: 2/6 frames, 50.0 frames/s")
    assert any(name == "operator" and args["operator"] == "faceanything.cancel" for name, args in running)

    bpy.ops.faceanything.cancel()
    pump_until_done(addon.capture_job)
    assert "Cancelled at 2/6 frames" in texts(draw_panel(addon))

    addon.capture_job._capture = None
    settings.status = "RUNNING"  # saved while running, then reopened: nothing runs any more
    assert "interrupted" in texts(draw_panel(addon))

    monkeypatch.delenv("FAKE_RUNTIME_HOLD")
    monkeypatch.setenv("FAKE_RUNTIME_FAIL", "bad_input")
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    error = texts(draw_panel(addon))
    assert "cannot be read" in error and "Resume Capture" in error

    monkeypatch.delenv("FAKE_RUNTIME_FAIL")
    bpy.ops.faceanything.capture()
    pump_until_done(addon.capture_job)
    assert f"Created {', '.join(builder[-1]['made'])}" in texts(draw_panel(addon))

    for source in ("FOLDER", "CLIP"):
        settings.footage_source = source
        shown = [args.get("property", "") for _, args in draw_panel(addon)]
        assert f"footage_{source.lower()[:4]}" in " ".join(shown)


def test_preferences_draw_with_setup_and_health_states(addon, scene, fake_runtime_python):
    preferences = addon.runtime_paths.get_preferences()
    preferences.runtime_python = str(fake_runtime_python)
    assert bpy.ops.faceanything.check_runtime() == {"FINISHED"}
    wait_for(lambda: addon.runtime_tasks.pump_runtime_tasks() is None, "the health answer")
    calls = []
    addon.prefs.draw_preferences(PreferencesWithLayout(preferences, RecordingLayout(calls)), bpy.context)
    shown = texts(calls)
    assert f"Using {fake_runtime_python} (preferences)" in shown
    assert "Runtime fake on Python" in shown and "Backends: mediapipe" in shown

    setup = addon.runtime_setup.SetupState
    for state, expected in (
        (setup(status="RUNNING", step=3, steps=5, title="install the runtime's packages", last_line="Collecting torch"),
         "Step 3 of 5: install the runtime's packages"),
        (setup(status="DONE", python="/usr/bin/python3.11"), "The runtime is set up"),
        (setup(status="ERROR", message="Step 3 of 5 (install) failed: pip exited with code 1", hint="Check."),
         "pip exited with code 1"),
    ):
        calls = []
        addon.prefs.draw_setup(RecordingLayout(calls), bpy.context, state)
        assert expected in texts(calls)


def test_escape_cancels_a_capture_started_from_the_panel(addon, scene, settings, builder, tmp_path, monkeypatch):
    """Background mode has no events and no modal handlers, so the capture starts as from a
    script and the operator's modal step, on a stand-in instance, gets events as Blender hands them."""
    monkeypatch.setenv("FAKE_RUNTIME_HOLD", str(tmp_path / "never"))
    capture = addon.operators.FACEANYTHING_OT_capture

    class CaptureOperator:
        """The operator's own methods on a plain object: an operator instance exists only while Blender runs it."""

        modal, report_outcome = capture.modal, capture.report_outcome
        reports = []
        _timer = bpy.context.window_manager.event_timer_add(0.25, window=bpy.context.window)

        def report(self, kind, text):
            self.reports.append((kind, text))

    operator = CaptureOperator()
    bpy.ops.faceanything.capture()
    wait_for(lambda: addon.capture_job.pump_capture() and settings.frames_done >= 2, "two frames")
    assert operator.modal(bpy.context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    assert operator.modal(bpy.context, SimpleNamespace(type="ESC", value="PRESS")) == {"RUNNING_MODAL"}
    pump_until_done(addon.capture_job)
    assert operator.modal(bpy.context, SimpleNamespace(type="TIMER", value="NOTHING")) == {"CANCELLED"}
    assert settings.status == "CANCELLED"
    assert operator.reports == [({"WARNING"}, f"Capture cancelled. {addon.capture_job.RESUME_HINT}")]


def test_rig_section_draws_with_and_without_an_armature(addon, scene):
    calls = []
    addon.ui.FACEANYTHING_PT_rig.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    assert "Pick an armature" in texts(calls)
    armature = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(armature)
    scene.faceanything.rig_armature = armature
    scene.faceanything.rig_bindings.add().bone = "jaw"
    calls = []
    addon.ui.FACEANYTHING_PT_rig.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    assert ("prop_search", "bone") in [(name, args.get("property")) for name, args in calls]


QUIT_WHILE_CAPTURING = r"""
import sys, bpy
from faceanything_blender.packaging import enable_checkout
addon = sys.modules[enable_checkout()]
addon.runtime_paths.get_preferences().runtime_python = sys.argv[1]
bpy.context.scene.faceanything.footage_file = sys.argv[2]
bpy.ops.faceanything.capture()
while addon.capture_job.pump_capture() and bpy.context.scene.faceanything.frames_done < 2:
    pass
print("RUNTIME", addon.capture_job._capture.job.client._process.pid, flush=True)
"""


def test_quitting_blender_ends_the_runtime(fake_runtime_python, footage, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", QUIT_WHILE_CAPTURING, str(fake_runtime_python), str(footage)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "FAKE_RUNTIME_HOLD": str(tmp_path / "never")},
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split("RUNTIME ")[1].split()[0])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the runtime's exit after Blender quit")
