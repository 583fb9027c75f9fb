"""The manifest, the zip built by Blender's own builder, and a real install into a fresh bpy:
the zip holds the product only and every module in it imports (the add-on's in Blender, the
runtime's in the runtime's own Python), every class registers, and disabling leaves nothing behind
(classes, scene property, handlers, timers, exit hooks, runtime processes), twice over."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile

import pytest
from conftest import REPO, RUNTIME_PYTHON

from faceanything_blender import packaging

TERSE_LIMIT = 64  # Blender's limit for the tagline and permission texts
NOT_PRODUCT_NAMES = {"bench", "benchmark", "test", "tests", "fixtures", "synthetic", "conftest"}
NOT_PRODUCT_PREFIXES = ("bench_", "test_", "fake_")
INSTALLED_PACKAGE = "bl_ext.user_default.faceanything"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    return packaging.build(tmp_path_factory.mktemp("build"))


def test_manifest_follows_blenders_rules():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0" and manifest["id"] == "faceanything"
    assert manifest["blender_version_min"] == "5.0.0" and manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"files", "network"}
    for text in (manifest["tagline"], *manifest["permissions"].values()):
        assert len(text) <= TERSE_LIMIT and not text.endswith((".", "!")), text


def test_zip_holds_the_addon_and_the_runtime_source(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    for required in ("blender_manifest.toml", "__init__.py", "operators.py", "runtime_client.py",
                     "model_runtime/__init__.py", "model_runtime/protocol.py", "model_runtime/server.py",
                     "model_runtime/requirements.txt", "model_runtime/requirements-nodeps.txt"):
        assert required in names, required
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith(("faceanything_blender/", "packaging/"))]


def test_zip_holds_no_benchmark_test_fixture_or_builder(built_zip):
    def developers_only(name: str) -> bool:
        stems = [part.split(".")[0] for part in name.split("/")]
        return any(stem in NOT_PRODUCT_NAMES or stem.startswith(NOT_PRODUCT_PREFIXES) for stem in stems)

    names = zipfile.ZipFile(built_zip).namelist()
    assert len(names) > 40 and not [name for name in names if developers_only(name)]
    assert "packaging.py" not in names  # the zip builder; the runtime would import it as PyPI's `packaging`


IMPORT_ADDON_MODULES = r"""
import importlib, json, sys, traceback
from pathlib import Path
import bpy

zip_path, package = sys.argv[1:3]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
root = Path(sys.modules[package].__file__).parent
failed, modules = {}, []
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    if parts[0] == "model_runtime":
        continue
    name = ".".join((package, *parts)).removesuffix(".__init__")
    modules.append(name)
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=4)
print("REPORT " + json.dumps({"root": str(root), "modules": modules, "failed": failed}))
"""

IMPORT_RUNTIME_MODULES = r"""
import importlib, json, sys, traceback
from pathlib import Path

root = Path(sys.argv[1])
sys.path.insert(0, str(root))
failed, modules = {}, []
for path in sorted((root / "model_runtime").rglob("*.py")):
    name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    modules.append(name)
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=4)
origin = Path(sys.modules["model_runtime"].__file__).parent
print("REPORT " + json.dumps({"origin": str(origin), "modules": modules, "failed": failed}))
"""


def _report(done: subprocess.CompletedProcess) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def test_every_module_of_the_installed_zip_imports(built_zip, tmp_path):
    """The add-on's modules in a fresh bpy that installed the zip; the runtime's, from the installed
    copy, in the runtime's own Python (they need its packages: MediaPipe, torch, OpenCV, ...)."""
    installed = _report(subprocess.run([sys.executable, "-c", IMPORT_ADDON_MODULES, str(built_zip), INSTALLED_PACKAGE],
                                       capture_output=True, text=True, timeout=300, cwd=tmp_path))
    assert installed["failed"] == {}, "\n".join(installed["failed"].values())
    assert f"{INSTALLED_PACKAGE}.operators" in installed["modules"] and len(installed["modules"]) > 15
    if not RUNTIME_PYTHON.is_file():
        pytest.skip(f"the runtime's modules need the runtime's Python ({RUNTIME_PYTHON}): run `make runtime`")
    runtime = _report(subprocess.run([str(RUNTIME_PYTHON), "-c", IMPORT_RUNTIME_MODULES, installed["root"]],
                                     capture_output=True, text=True, timeout=300, cwd=tmp_path))
    assert runtime["origin"] == os.path.join(installed["root"], "model_runtime")  # the zip's copy, not the checkout's
    assert runtime["failed"] == {}, "\n".join(runtime["failed"].values())
    assert "model_runtime.reconstruct.pipeline" in runtime["modules"] and len(runtime["modules"]) > 30


def test_make_extension_command_builds_a_zip(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "faceanything_blender.packaging", "--output-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "built and validated" in done.stdout
    assert (tmp_path / "faceanything-0.1.0.zip").is_file()


INSTALL_CHECK = r"""
import atexit, json, sys, time
from pathlib import Path
import bpy
import addon_utils

zip_path, fake_python, footage = sys.argv[1:4]
PACKAGE = "bl_ext.user_default.faceanything"

# Python cannot list exit hooks (its count never shrinks), so follow registrations instead.
exit_hooks = []
_register, _unregister = atexit.register, atexit.unregister
def track_register(func, *args, **kwargs):
    exit_hooks.append(func)
    return _register(func, *args, **kwargs)
def track_unregister(func):
    exit_hooks[:] = [hook for hook in exit_hooks if hook != func]
    return _unregister(func)
atexit.register, atexit.unregister = track_register, track_unregister

def leftovers(module=None):
    state = {
        "types": sorted(n for n in dir(bpy.types) if n.startswith("FACEANYTHING")),
        "scene_property": hasattr(bpy.types.Scene, "faceanything"),
        "handlers": {n: len(getattr(bpy.app.handlers, n)) for n in dir(bpy.app.handlers)
                     if isinstance(getattr(bpy.app.handlers, n), list)},
        "exit_hooks": len(exit_hooks),
        "enabled": PACKAGE in bpy.context.preferences.addons,
    }
    if module is not None:
        state["timers"] = [bpy.app.timers.is_registered(module.capture_job.pump_capture),
                           bpy.app.timers.is_registered(module.runtime_tasks.pump_runtime_tasks)]
    return state

def start_capture(module):
    module.runtime_paths.get_preferences().runtime_python = fake_python
    bpy.context.scene.faceanything.footage_file = footage
    bpy.ops.faceanything.capture()
    return module.capture_job._capture.job.client

report = {"before": leftovers(), "cycles": []}
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = sys.modules[PACKAGE]
report["registered"] = {cls.__name__: cls.is_registered for cls in module.classes}
preferences = bpy.context.preferences.addons[PACKAGE].preferences
report["preferences_idname"] = [type(preferences).__name__, type(preferences).bl_idname]
report["runtime_source_root"] = str(module.runtime_paths.runtime_source_root())
report["addon_dir"] = str(Path(module.__file__).parent)
for cycle in range(2):
    client = start_capture(module)
    while module.capture_job.pump_capture() and bpy.context.scene.faceanything.frames_done < 2:
        time.sleep(0.02)
    running = {"enabled": leftovers(module), "runtime_running": client.running}
    addon_utils.disable(PACKAGE, default_set=True)
    running["disabled"] = leftovers(module)
    running["runtime_exit_code"] = client.returncode
    report["cycles"].append(running)
    module = addon_utils.enable(PACKAGE, default_set=True)
addon_utils.disable(PACKAGE, default_set=True)
report["after"] = leftovers(module)
print("REPORT " + json.dumps(report))
"""


def test_installed_zip_registers_everything_and_disabling_leaves_nothing(built_zip, fake_runtime_python, tmp_path):
    footage = tmp_path / "clip.mp4"
    footage.write_bytes(b"x")
    env = {**os.environ, "FAKE_RUNTIME_HOLD": str(tmp_path / "never")}
    done = subprocess.run(
        [sys.executable, "-c", INSTALL_CHECK, str(built_zip), str(fake_runtime_python), str(footage)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    report = json.loads(lines[-1][len("REPORT "):])

    assert report["registered"] and all(report["registered"].values()), report["registered"]
    assert report["preferences_idname"] == ["FACEANYTHING_AddonPreferences", "bl_ext.user_default.faceanything"]
    assert report["runtime_source_root"] == report["addon_dir"]  # the runtime runs from inside the extension
    before = report["before"]
    for cycle in report["cycles"]:
        enabled, disabled = cycle["enabled"], cycle["disabled"]
        assert cycle["runtime_running"] and enabled["timers"] == [True, False]
        assert enabled["scene_property"] and "FACEANYTHING_PT_capture" in enabled["types"]
        assert enabled["handlers"]["load_pre"] == before["handlers"]["load_pre"] + 1
        assert enabled["exit_hooks"] == before["exit_hooks"] + 1
        assert cycle["runtime_exit_code"] is not None, "the runtime outlived the add-on"
        assert disabled["timers"] == [False, False]
        assert {key: disabled[key] for key in before} == before
    assert {key: report["after"][key] for key in before} == before
