"""The runtime's own file-format modules, loaded from their files.

Blender's Python cannot import the runtime package (its dependencies live in another
environment), but `reconstruction_format.py` and `errors.py` use only the standard library and
numpy, so the scene builder loads those very files and both sides share one definition.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from ..runtime_paths import RUNTIME_PACKAGE, RuntimeNotFound, runtime_source_root


@cache
def runtime_module(stem: str) -> ModuleType:
    """``model_runtime/<stem>.py`` as a module named ``faceanything_runtime_<stem>`` (a dotted
    stem names a file in a subpackage: ``expressions.arkit``)."""
    path = runtime_source_root() / RUNTIME_PACKAGE / f"{stem.replace('.', '/')}.py"
    name = f"faceanything_runtime_{stem.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RuntimeNotFound(f"Cannot load {path}.", "Reinstall the extension from a zip made by `make extension`.")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: dataclasses look their defining module up in sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reconstruction_format() -> ModuleType:
    return runtime_module("reconstruction_format")


def errors() -> ModuleType:
    return runtime_module("errors")


def arkit() -> ModuleType:
    return runtime_module("expressions.arkit")
