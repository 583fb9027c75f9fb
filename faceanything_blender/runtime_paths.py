"""Where the model runtime lives: its source folder, its interpreter, and the runtime modules the
add-on shares with it (`runtime_module`).

Two layouts are supported. Installed from the extension zip, the runtime package sits inside the
add-on folder (``<addon>/model_runtime``). In a development checkout it sits beside it
(``<repo>/model_runtime``) and `make runtime` has made ``<repo>/.venv-runtime``. Paths are
resolved through symbolic links, so an add-on folder made of links to a checkout (see
`packaging.link_checkout`) counts as that checkout.

This module does not import bpy at import time, so the headless tools and tests can use it.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

ADDON_DIR = Path(__file__).resolve().parent
RUNTIME_PACKAGE = "model_runtime"
DEV_VENV_NAME = ".venv-runtime"
USER_VENV_NAME = "runtime-venv"
USER_CACHE_NAME = "cache"
SHARED_PACKAGE = "faceanything_runtime"
"""The name the runtime's shared modules are loaded under in Blender's Python."""


def runtime_source_root(addon_dir: Path = ADDON_DIR) -> Path:
    """The folder that contains ``model_runtime/`` (the runtime's working directory and PYTHONPATH)."""
    for root in (addon_dir, addon_dir.parent):
        if (root / RUNTIME_PACKAGE / "__init__.py").is_file():
            return root
    raise ImportError(
        f"The runtime package ({RUNTIME_PACKAGE}) is missing from {addon_dir}. "
        "Reinstall the extension from a zip made by `make extension`."
    )


def runtime_module(stem: str) -> ModuleType:
    """``model_runtime/<stem>.py`` as ``faceanything_runtime.<stem>``, loaded from the runtime's own file.

    Blender's Python cannot import the runtime package (its dependencies live in another
    environment), but the modules both sides share (`protocol`, `option_schema`, `errors`,
    `frame_numbers`, `reconstruction_format`, `expressions.arkit`) use only the standard library
    and numpy; a dotted stem names a module of a subpackage. They are
    loaded as modules of a package that points at the runtime's folder without running its
    ``__init__``, so their relative imports of each other work and both sides share one definition.
    """
    folder = (runtime_source_root() / RUNTIME_PACKAGE).resolve()
    parts = stem.split(".")
    for depth in range(len(parts)):  # the package and any subpackage, without their __init__
        name = ".".join([SHARED_PACKAGE, *parts[:depth]])
        if name not in sys.modules:
            package = ModuleType(name)
            package.__path__ = [str(folder.joinpath(*parts[:depth]))]
            sys.modules[name] = package
    return importlib.import_module(f"{SHARED_PACKAGE}.{stem}")


UserError = runtime_module("errors").UserError
"""The one error type with a message and a hint, on both sides."""


class RuntimeNotFound(UserError):
    """The runtime's interpreter cannot be found."""


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


def get_preferences(context=None):
    """The add-on's preferences (`prefs.FACEANYTHING_AddonPreferences`)."""
    import bpy

    return (context or bpy.context).preferences.addons[__package__].preferences


def preferred_runtime_python(preferences) -> tuple[Path, str]:
    """The interpreter the preferences lead to, and where it came from (raises RuntimeNotFound)."""
    import bpy

    chosen = preferences.runtime_python.strip()
    return resolve_runtime_python(bpy.path.abspath(chosen) if chosen else "", __package__)


def preferred_cache_dir(preferences) -> Path:
    """The preferences' cache folder, or the extension's user folder when it is empty."""
    import bpy

    if preferences.cache_dir.strip():
        return Path(bpy.path.abspath(preferences.cache_dir.strip()))
    return default_cache_dir(__package__)


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
