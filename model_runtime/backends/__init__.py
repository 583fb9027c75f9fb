"""Backends turn a frame into ``FrameMaps`` (see contract.py); this registry names them.

Backends are imported only when created, by module path, so that a backend whose packages or
weights are missing (the Face Anything network needs torch and a checkpoint) does not break
the others.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

import numpy as np

from model_runtime.contract import FrameMaps
from model_runtime.errors import UserError


class Backend(Protocol):
    """What every backend provides."""

    name: str
    version: str  # names the backend's code and model versions; recorded in capture manifests
    canonical_space: str  # the space its canonical maps are in (contract.CANONICAL_SPACE_ID or its own)

    # intrinsics: (3, 3) pinhole matrix; None asks a backend that can estimate it to do so
    def predict(self, image_rgb: np.ndarray, intrinsics: np.ndarray | None) -> FrameMaps: ...

    def predict_frames(self, images: Iterable[np.ndarray], intrinsics: np.ndarray | None) -> Iterator[FrameMaps]: ...

    def describe(self) -> dict: ...  # settings recorded in the capture manifest

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Entry:
    module: str
    class_name: str
    description: str
    version: str
    """The backend's code version: raise it whenever its maps change for the same frames, so that
    captures it made before are computed again instead of resumed or reused (see capture.py)."""


_REGISTRY = {
    "mediapipe": _Entry(
        "model_runtime.backends.mediapipe_dense",
        "MediaPipeDenseBackend",
        "MediaPipe Face Mesh made dense (CPU): 478 landmarks, head pose by PnP, "
        "depth and canonical maps rasterised from the landmark mesh",
        version="6",
    ),
    "faceanything": _Entry(
        "model_runtime.backends.faceanything",
        "FaceAnythingBackend",
        "Face Anything network (torch; GPU recommended): per-pixel depth and canonical coordinates",
        version="3",
    ),
}


def available_backends() -> dict[str, str]:
    """Backend name -> one-line description (nothing is imported)."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def backend_version(name: str) -> str:
    """The named backend's code version (nothing is imported)."""
    return _entry(name).version


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UserError(f"Unknown backend {name!r}.", hint=f"Choose one of: {', '.join(_REGISTRY)}.",
                        code="unknown_backend")
    return entry


def create_backend(name: str, **options) -> Backend:
    """A new backend; ``options`` go to its constructor."""
    entry = _entry(name)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise UserError(
            f"The {name} backend cannot be loaded: {exc}.",
            hint="Set up the runtime again (make runtime, or the extension's 'Set up runtime' button), "
                 "or choose another backend.",
            code="backend_unavailable",
        ) from exc
    backend_class = getattr(module, entry.class_name)
    accepted = inspect.signature(backend_class).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(p for p in accepted if p not in ("self", "checkpoint", "device"))
        raise UserError(f"The {name} backend has no option {', '.join(unknown)}.",
                        hint=f"Its options are: {known}.", code="bad_option")
    return backend_class(**options)
