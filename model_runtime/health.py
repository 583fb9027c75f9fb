"""What the runtime can do on this machine: versions, backends and devices (the `health` reply)."""
from __future__ import annotations

import importlib.metadata
import platform

from . import __version__
from .backends import available_backends

REPORTED_PACKAGES = ("numpy", "scipy", "mediapipe", "opencv-python-headless", "av", "torch", "depth-anything-3")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def devices() -> list[dict]:
    """Compute devices torch can use; the CPU is always there."""
    found = [{"name": "cpu", "description": platform.processor() or platform.machine()}]
    try:
        import torch
    except ImportError:
        return found
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append({"name": f"cuda:{index}", "description": f"{props.name}, {props.total_memory / 2**30:.0f} GiB"})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append({"name": "mps", "description": "Apple GPU"})
    return found


def health_report() -> dict:
    return {
        "version": __version__,
        "python": platform.python_version(),
        "backends": available_backends(),
        "devices": devices(),
        "packages": package_versions(),
    }
