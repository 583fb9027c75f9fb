"""The scene's settings as a runtime request: which footage, which options, which cache folder.

Every option comes from the runtime's `option_schema.py`: the panel's options from the scene's
settings, the others (device, checkpoint) from the preferences, and any further ones a caller
gives (the headless CLI). The runtime validates them and its message reaches the panel.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import bpy

from .props import panel_values, schema
from .runtime_paths import UserError


class CaptureError(UserError):
    """A capture that cannot start."""


def footage_paths(settings) -> tuple[Path, Path]:
    """(what the runtime reads, what the scene shows) for the chosen footage."""
    if settings.footage_source == "CLIP":
        clip = settings.footage_clip
        if clip is None:
            raise CaptureError("No movie clip is chosen.", "Pick a clip under Footage, or choose a video file.")
        shown = Path(bpy.path.abspath(clip.filepath, library=clip.library))
        read = shown.parent if clip.source == "SEQUENCE" else shown
    elif settings.footage_source == "FOLDER":
        read = shown = Path(bpy.path.abspath(settings.footage_folder)) if settings.footage_folder else Path()
    else:
        read = shown = Path(bpy.path.abspath(settings.footage_file)) if settings.footage_file else Path()
    if read == Path():
        raise CaptureError("No footage is chosen.", "Pick a video file, an image folder or a movie clip under Footage.")
    if not read.exists():
        raise CaptureError(f"The footage {read} does not exist.", "Pick the file again; it may have moved.")
    return read, shown


def option_values(settings, preferences, extra: dict | None = None) -> dict:
    """Every option of a capture and reconstruction, validated by the schema (raises CaptureError)."""
    values = panel_values(settings)
    for option in schema.OPTIONS:
        if not option.panel and hasattr(preferences, option.name):
            values[option.name] = _preference_value(preferences, option)
    values.update(extra or {})
    try:
        return schema.validate(values)
    except UserError as exc:
        raise CaptureError(exc.message, exc.hint) from None


def _preference_value(preferences, option):
    value = getattr(preferences, option.name)
    if isinstance(value, str) and option.kind == schema.CHOICE:
        return value.lower()
    if isinstance(value, str):
        return bpy.path.abspath(value.strip()) if value.strip() else None
    return value


def capture_fields(source: Path, output: Path, options: dict) -> dict:
    """The fields of the ``capture_reconstruct`` request (see model_runtime/protocol.py).

    The extension owns its cache folders, so a folder holding a capture made with other settings
    is replaced (``overwrite``); a matching one is resumed.
    """
    return {"input": str(source), "output": str(output), **options, "overwrite": True}


def footage_identity(footage: Path) -> dict:
    stat = footage.stat()
    return {"path": str(footage.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def capture_folder_for(cache_dir: Path, footage: Path, options: dict) -> Path:
    """The cache folder of a capture: one per footage (path, size, date) and capture settings.

    The settings part is the runtime's own `settings_key` of the capture options, so the same
    footage and settings always give the same folder (that is how a cancelled capture resumes),
    and other settings, or a runtime whose defaults changed, get another.
    """
    settings = {option.name: options.get(option.name) for option in schema.options_for(schema.CAPTURE)}
    key = {"footage": footage_identity(footage), "settings": schema.settings_key(settings)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", footage.stem or footage.name)[:40] or "footage"
    return cache_dir / f"{stem}-{digest}"
