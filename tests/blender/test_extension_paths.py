"""Where the runtime is found (installed zip, development checkout, preferences, Set up runtime),
and how captures are keyed in the cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO

from faceanything_blender import runtime_paths
from faceanything_blender.runtime_paths import RuntimeNotFound


def make_runtime(root: Path) -> None:
    (root / "model_runtime").mkdir(parents=True)
    (root / "model_runtime" / "__init__.py").write_text("")


def make_python(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_installed_layout_runs_the_runtime_inside_the_addon(tmp_path):
    addon = tmp_path / "extensions" / "user_default" / "faceanything"
    make_runtime(addon)
    assert runtime_paths.runtime_source_root(addon) == addon
    assert not runtime_paths.is_dev_checkout(addon)
    assert runtime_paths.dev_checkout_python(addon) is None


def test_checkout_layout_runs_the_runtime_beside_the_addon(tmp_path):
    addon = tmp_path / "faceanything_blender"
    addon.mkdir()
    make_runtime(tmp_path)
    assert runtime_paths.runtime_source_root(addon) == tmp_path
    assert runtime_paths.dev_checkout_python(addon) is None  # no .venv-runtime yet
    python = make_python(tmp_path / ".venv-runtime" / "bin" / "python")
    assert runtime_paths.resolve_runtime_python("", "unused", addon) == (python, "development checkout")


def test_this_checkout_is_a_checkout():
    assert runtime_paths.ADDON_DIR == REPO / "faceanything_blender"
    assert runtime_paths.runtime_source_root() == REPO


def test_a_missing_runtime_package_says_what_to_do(tmp_path):
    with pytest.raises(ImportError, match="model_runtime") as error:
        runtime_paths.runtime_source_root(tmp_path / "addon")
    assert "make extension" in str(error.value)


def test_the_preference_wins(tmp_path):
    addon = tmp_path / "faceanything_blender"
    addon.mkdir()
    make_runtime(tmp_path)
    make_python(tmp_path / ".venv-runtime" / "bin" / "python")
    chosen = os.path.join("~", "envs", "face", "bin", "python")
    python, origin = runtime_paths.resolve_runtime_python(f"  {chosen} ", "unused", addon)
    assert python == Path(os.path.expanduser(chosen)) and origin == "preferences"


def test_installed_without_set_up_asks_for_it(addon, tmp_path):
    installed = tmp_path / "faceanything"
    make_runtime(installed)
    with pytest.raises(RuntimeNotFound, match="No runtime interpreter") as error:
        runtime_paths.resolve_runtime_python("", addon.__name__, installed)
    assert "Set up runtime" in error.value.hint
    venv_python = runtime_paths.venv_python(runtime_paths.user_venv_dir(addon.__name__))
    make_python(venv_python)
    assert runtime_paths.resolve_runtime_python("", addon.__name__, installed) == (venv_python, "Set up runtime")


def test_user_folders_belong_to_the_extension(addon):
    venv = runtime_paths.user_venv_dir(addon.__name__)
    cache = runtime_paths.default_cache_dir(addon.__name__)
    assert venv.is_dir() and venv.name == "runtime-venv" and cache.is_dir() and cache.name == "cache"
    assert venv.parent == cache.parent and venv.parent.name == "faceanything"


def test_capture_folders_are_keyed_by_footage_and_capture_settings(addon, tmp_path):
    capture_folder_for = addon.capture_request.capture_folder_for
    footage = tmp_path / "My Clip (1).mp4"
    footage.write_bytes(b"frames")
    settings = {"backend": "mediapipe", "frames": None, "mesh": "template"}
    folder = capture_folder_for(tmp_path / "cache", footage, settings)
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("My_Clip_1_-")
    assert capture_folder_for(tmp_path / "cache", footage, {**settings, "mesh": "dense"}) == folder
    assert capture_folder_for(tmp_path / "cache", footage, {**settings, "frames": "0:10:1"}) != folder
    os.utime(footage, ns=(1, 1))
    assert capture_folder_for(tmp_path / "cache", footage, settings) != folder
