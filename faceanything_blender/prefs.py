"""Add-on preferences: which runtime to run, on which device, with which weights, caching where."""
from __future__ import annotations

import shlex
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import runtime_paths

DEVICES = [
    ("AUTO", "Auto", "A GPU when the runtime finds one, else the CPU"),
    ("CUDA", "CUDA", "An NVIDIA GPU"),
    ("CPU", "CPU", "The processor (slow for the Face Anything network)"),
]


class FACEANYTHING_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    runtime_python: StringProperty(
        name="Runtime Interpreter",
        subtype="FILE_PATH",
        description="Python of the runtime's environment; empty finds it (checkout or Set up runtime)",
    )
    device: EnumProperty(name="Device", items=DEVICES, default="AUTO")
    checkpoint: StringProperty(
        name="Face Anything Checkpoint",
        subtype="FILE_PATH",
        description="checkpoint.pt you downloaded, or its converted .safetensors (for the Face Anything backend)",
    )
    cache_dir: StringProperty(
        name="Cache Folder",
        subtype="DIR_PATH",
        description="Where captures are kept, one folder per footage; empty uses the extension's user folder",
    )
    setup_python: StringProperty(
        name="Python for Set-up",
        subtype="FILE_PATH",
        description="A system Python 3.11 to build the runtime environment from; empty searches PATH",
    )
    pip_options: StringProperty(
        name="Extra pip Options",
        description="For example --extra-index-url https://download.pytorch.org/whl/cu128 for CUDA builds of torch",
    )

    def draw(self, context):
        from .ui import draw_preferences

        draw_preferences(self, context)


def get_preferences(context=None) -> FACEANYTHING_AddonPreferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def runtime_python(preferences) -> tuple[Path, str]:
    """The interpreter to run the runtime with and where it came from (raises RuntimeNotFound)."""
    chosen = preferences.runtime_python.strip()
    return runtime_paths.resolve_runtime_python(bpy.path.abspath(chosen) if chosen else "", __package__)


def cache_dir(preferences) -> Path:
    if preferences.cache_dir.strip():
        return Path(bpy.path.abspath(preferences.cache_dir.strip()))
    return runtime_paths.default_cache_dir(__package__)


def pip_options(preferences) -> list[str]:
    return shlex.split(preferences.pip_options)


classes = (FACEANYTHING_AddonPreferences,)
