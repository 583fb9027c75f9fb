"""The panel's asynchronous path with the real runtime subprocess on the sample clip: to the end
(real reconstruction, real scene builder), cancel and resume, a killed runtime, Check runtime."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import bpy
import pytest
from conftest import REPO, pump_until_done, wait_for


@pytest.fixture
def real_settings(addon, scene, real_runtime_python, face_clip):
    addon.runtime_paths.get_preferences().runtime_python = str(real_runtime_python)
    settings = scene.faceanything
    settings.footage_file = str(face_clip)
    return settings


def capture_frames(settings, first: int, last: int) -> None:
    settings.frames = f"{first}:{last}"
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


def test_one_frame_number_from_footage_to_scene_tracks_and_exports(addon, scene, real_settings, real_runtime_python,
                                                                    tmp_path):
    """Footage frame 10 is frame 10 in the panel's range, the scene, the Movie Clip's markers, the
    tracks CSV and `export --frame`."""
    capture_frames(real_settings, 10, 20)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    assert (scene.frame_start, scene.frame_end) == (10, 20)
    capture_dir = Path(real_settings.capture_dir)
    exports = tmp_path / "tracks.csv", tmp_path / "frame10.obj"
    done = subprocess.run([str(real_runtime_python), "-m", "model_runtime", "export", str(capture_dir),
                           "--tracks-csv", str(exports[0]), "--mesh-file", str(exports[1]), "--frame", "10"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(exports[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({int(row["frame"]) for row in rows}) == list(range(10, 21))
    nose = {int(row["frame"]): (float(row["x"]), float(row["y"])) for row in rows if row["name"] == "nose_tip"}
    track = scene.active_clip.tracking.tracks["FA_nose_tip"]
    width, height = scene.active_clip.size
    marker = track.markers.find_frame(10)
    assert marker is not None and not marker.mute
    # Blender's marker origin is the bottom-left corner of the frame, the CSV's the first pixel's centre.
    x, y = marker.co[0] * width - 0.5, (1.0 - marker.co[1]) * height - 0.5
    assert abs(x - nose[10][0]) < 0.01 and abs(y - nose[10][1]) < 0.01
    recon = addon.runtime_paths.runtime_module("reconstruction_format").load_reconstruction(capture_dir / "reconstruction")
    assert list(recon.frame_numbers) == list(range(10, 21)) and list(recon.source_indices) == list(range(9, 20))
    first_vertex = next(line for line in exports[1].read_text().splitlines() if line.startswith("v "))
    expected = recon.vertices[0, 0] * [1, -1, -1]
    assert [float(v) for v in first_vertex.split()[1:]] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_new_capture_of_the_same_footage_replaces_the_old_and_keeps_the_rig_bound(addon, scene, real_settings):
    capture_frames(real_settings, 1, 6)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    armature = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    armature.data.edit_bones.new("jaw").tail = (0, 0, 0.1)
    bpy.ops.object.mode_set(mode="OBJECT")
    constraint = armature.pose.bones["jaw"].constraints.new("COPY_LOCATION")
    constraint.name, constraint.target = "FA Copy Location", bpy.data.objects["FA_chin"]
    objects_before = len(bpy.data.objects)

    real_settings.smooth = "off"  # another setting: another capture folder, the same footage
    capture_frames(real_settings, 1, 6)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    assert len(bpy.data.objects) == objects_before
    assert not [obj.name for obj in bpy.data.objects if obj.name.startswith("FA_chin.")]
    bound = armature.pose.bones["jaw"].constraints["FA Copy Location"].target
    assert bound is not None and bound.name == "FA_chin" and bound.users_collection


def test_a_stale_cache_folder_is_replaced_and_a_matching_one_resumed(addon, scene, real_settings):
    """The extension owns its cache: a folder left by other settings (an older runtime's defaults) is
    replaced, never refused; a folder of the same capture is resumed, its finished frames kept."""
    capture_frames(real_settings, 1, 4)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    capture_dir = Path(real_settings.capture_dir)
    kept = (capture_dir / "frames" / "000000.npz").stat().st_mtime_ns
    capture_frames(real_settings, 1, 4)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE" and (capture_dir / "frames" / "000000.npz").stat().st_mtime_ns == kept

    manifest = json.loads((capture_dir / "manifest.json").read_text())
    manifest["settings_hash"], manifest["settings"]["appearance"] = "0" * 16, "an older default"
    (capture_dir / "manifest.json").write_text(json.dumps(manifest))
    capture_frames(real_settings, 1, 4)
    pump_until_done(addon.capture_job)
    assert real_settings.status == "DONE", real_settings.last_error
    assert json.loads((capture_dir / "manifest.json").read_text())["settings_hash"] != "0" * 16
