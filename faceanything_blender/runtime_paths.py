"""Where the model runtime lives: its source folder, its interpreter, and its protocol module.

Two layouts are supported. Installed from the extension zip, the runtime package sits inside the
add-on folder (``<addon>/model_runtime``). In a development checkout it sits beside it
(``<repo>/model_runtime``) and `make runtime` has made ``<repo>/.venv-runtime``. Paths are
resolved through symbolic links, so an add-on folder made of links to a checkout (see
`packaging.link_checkout`) counts as that checkout.

This module does not import bpy at import time, so the headless tools and tests can use it.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

ADDON_DIR = Path(__file__).resolve().parent
RUNTIME_PACKAGE = "model_runtime"
DEV_VENV_NAME = ".venv-runtime"
USER_VENV_NAME = "runtime-venv"
USER_CACHE_NAME = "cache"


class HintedError(Exception):
    """A failure the user can act on: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


class RuntimeNotFound(HintedError):
    """The runtime's source or interpreter cannot be found."""


def runtime_source_root(addon_dir: Path = ADDON_DIR) -> Path:
    """The folder that contains ``model_runtime/`` (the runtime's working directory and PYTHONPATH)."""
    for root in (addon_dir, addon_dir.parent):
        if (root / RUNTIME_PACKAGE / "__init__.py").is_file():
            return root
    raise RuntimeNotFound(
        f"The runtime package ({RUNTIME_PACKAGE}) is missing from {addon_dir}.",
        "Reinstall the extension from a zip made by `make extension`.",
    )


def is_dev_checkout(addon_dir: Path = ADDON_DIR) -> bool:
    """True when the add-on runs from a source checkout (runtime beside it, not inside)."""
    return not (addon_dir / RUNTIME_PACKAGE).is_dir() and (addon_dir.parent / RUNTIME_PACKAGE).is_dir()


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a virtual environment, on any platform."""
    if sys.platform == "win32":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def dev_checkout_python(addon_dir: Path = ADDON_DIR) -> Path | None:
    """``<repo>/.venv-runtime``'s interpreter in a development checkout, if it exists."""
    if not is_dev_checkout(addon_dir):
        return None
    python = venv_python(addon_dir.parent / DEV_VENV_NAME)
    return python if python.exists() else None


def user_venv_dir(package: str) -> Path:
    """The virtual environment that "Set up runtime" creates in the extension's user folder."""
    import bpy

    return Path(bpy.utils.extension_path_user(package, path=USER_VENV_NAME, create=True))


def default_cache_dir(package: str) -> Path:
    """Where captures go unless the preferences say otherwise."""
    import bpy

    return Path(bpy.utils.extension_path_user(package, path=USER_CACHE_NAME, create=True))


def resolve_runtime_python(preference: str, package: str, addon_dir: Path = ADDON_DIR) -> tuple[Path, str]:
    """The interpreter to run the runtime with, and where that choice came from.

    Order: the path in the preferences; the checkout's ``.venv-runtime``; the environment made
    by "Set up runtime". Raises `RuntimeNotFound` when none exists.
    """
    if preference.strip():
        return Path(os.path.expanduser(preference.strip())), "preferences"
    dev = dev_checkout_python(addon_dir)
    if dev is not None:
        return dev, "development checkout"
    user = venv_python(user_venv_dir(package))
    if user.exists():
        return user, "Set up runtime"
    raise RuntimeNotFound(
        "No runtime interpreter is set up yet.",
        "Open Preferences > Add-ons > Face Anything and press Set up runtime, "
        "or set Runtime interpreter to a Python that has the runtime's requirements.",
    )


def load_protocol(source_root: Path | None = None) -> ModuleType:
    """The runtime's own ``protocol.py``, loaded from its file (the add-on cannot import the runtime package)."""
    return _load_module_file(((source_root or runtime_source_root()) / RUNTIME_PACKAGE / "protocol.py").resolve())


@cache
def _load_module_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("faceanything_runtime_protocol", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RuntimeNotFound(f"Cannot load the runtime protocol from {path}.", "Reinstall the extension.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
