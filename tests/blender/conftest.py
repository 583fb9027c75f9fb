"""Shared set-up of the Blender tests.

Blender's user folders go to a temporary folder: one for the whole session before bpy is
imported (bpy reads it once at start), and one per test for anything a test starts in a
subprocess. The add-on is enabled from the checkout as an extension (packaging.enable_checkout),
so `context.preferences.addons[__package__]` and the extension's user folder work as installed.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="faceanything-blender-user-")

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FAKE_RUNTIME = Path(__file__).resolve().parent / "fake_runtime.py"
RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"
PUMP_GUARD_S = 120.0  # a hang guard, not a timing: a healthy run ends long before


@pytest.fixture(autouse=True)
def blender_user_resources(tmp_path, monkeypatch):
    folder = tmp_path / "blender-user"
    folder.mkdir()
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(folder))
    return folder


@pytest.fixture(scope="session")
def addon():
    """The add-on's package module, enabled from the checkout for the whole session."""
    import bpy  # noqa: F401 - starts Blender with the session's user folder

    from faceanything_blender.packaging import disable_checkout, enable_checkout

    package = enable_checkout()
    yield sys.modules[package]
    disable_checkout(package)


@pytest.fixture
def scene(addon, tmp_path):
    """A new scene shown in the window, with the preferences pointed at a per-test cache."""
    import bpy

    window = bpy.context.window
    previous = window.scene
    created = bpy.data.scenes.new("FaceAnythingTest")
    window.scene = created
    preferences = addon.runtime_paths.get_preferences()
    preferences.cache_dir = str(tmp_path / "cache")
    yield created
    addon.capture_job.abort_capture()
    preferences.runtime_python = ""
    preferences.cache_dir = ""
    window.scene = previous
    remove_scene_and_its_data(created)


def remove_scene_and_its_data(scene) -> None:
    """Delete a test scene with its objects and whatever data that leaves unused, so that names
    made by one test (FA_face, ...) are free again for the next."""
    import bpy

    objects = list(scene.objects)
    collections = list(scene.collection.children_recursive)
    bpy.data.scenes.remove(scene)
    bpy.data.batch_remove(objects + collections)
    for blocks in (bpy.data.meshes, bpy.data.cameras, bpy.data.armatures, bpy.data.actions, bpy.data.movieclips):
        bpy.data.batch_remove([block for block in blocks if block.users == 0])


@pytest.fixture
def fake_runtime_python(tmp_path) -> Path:
    """An executable that stands in for the runtime's interpreter and runs fake_runtime.py."""
    wrapper = tmp_path / "fake-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_RUNTIME}"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def real_runtime_python() -> Path:
    if not RUNTIME_PYTHON.exists():
        pytest.skip(f"{RUNTIME_PYTHON} is missing: run `make runtime`")
    return RUNTIME_PYTHON


@pytest.fixture
def face_clip() -> Path:
    """Real face footage every clone has: the sample clip `make sample` fetches (72 frames)."""
    clip = REPO / "cache" / "sample" / "single_face.mp4"
    if not clip.is_file():
        pytest.skip(f"the sample clip {clip} is absent: run `make sample`")
    return clip


@pytest.fixture
def grid_clip() -> Path:
    clip = SHARED / "media" / "grid" / "bbaf2n.mpg"
    if not clip.is_file():
        pytest.skip(f"the GRID clip {clip} is absent (../shared beside the checkout)")
    return clip


def pump_until_done(capture_job) -> int:
    """Drive the capture timer as Blender would, until it stops; returns how many times it ran."""
    deadline = time.monotonic() + PUMP_GUARD_S
    calls = 0
    while capture_job.pump_capture() is not None:
        calls += 1
        assert time.monotonic() < deadline, "the capture did not end (hang guard)"
        time.sleep(0.02)
    return calls


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PUMP_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened (hang guard)"
        time.sleep(0.02)


class RecordingLayout:
    """Stands in for `bpy.types.UILayout`, which only exists while Blender draws a window.

    Every call is checked against UILayout's RNA definition: the function must exist, its
    keywords must be its parameters, enum values (icons, progress type) must be valid, `prop`
    must name a property of the data, and `operator` a registered operator. Layout attributes
    set by the draw code must be UILayout properties. Calls are recorded as (name, args).
    """

    def __init__(self, calls: list):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        import bpy

        assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no attribute {name!r}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        import bpy

        function = bpy.types.UILayout.bl_rna.functions.get(name)
        if function is None:
            raise AttributeError(f"UILayout has no function {name!r}")
        return lambda *args, **kwargs: self._call(function, args, kwargs)

    def _call(self, function, args, kwargs):
        parameters = {p.identifier: p for p in function.parameters if not p.is_output}
        outputs = [p for p in function.parameters if p.is_output]
        named = dict(zip(list(parameters), args))
        for key, value in kwargs.items():
            assert key in parameters, f"UILayout.{function.identifier}() has no parameter {key!r}"
            named[key] = value
        for key, value in named.items():
            parameter = parameters[key]
            if parameter.type == "ENUM" and isinstance(value, str):
                assert value in {item.identifier for item in parameter.enum_items}, (
                    f"{function.identifier}({key}={value!r}) is not a valid value"
                )
        if function.identifier == "prop":
            assert named["property"] in named["data"].bl_rna.properties, f"no property {named['property']!r}"
        if function.identifier == "operator":
            self._check_operator(named["operator"])
        self.calls.append((function.identifier, named))
        if not outputs:
            return None
        if outputs[0].fixed_type.identifier == "UILayout":
            return RecordingLayout(self.calls)
        return SimpleNamespace()  # operator properties

    @staticmethod
    def _check_operator(idname: str) -> None:
        import bpy

        category, name = idname.split(".")
        assert hasattr(bpy.types, f"{category.upper()}_OT_{name}"), f"operator {idname} is not registered"


def texts(calls: list) -> str:
    """Every text drawn (labels, button texts, progress text), joined by spaces as wrapped lines read."""
    return " ".join(str(args.get("text", "")) for _, args in calls if args.get("text"))


def read_image(path):
    """(H, W, 4) float pixel values in 0..255 of an image file, row 0 at the top."""
    from faceanything_blender.scene.preview import read_image as read  # imports bpy: after BLENDER_USER_RESOURCES

    return read(path)
