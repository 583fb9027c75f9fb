"""Loading Face Anything weights without running code from the file, and the one-time conversion
of the released ``checkpoint.pt`` to safetensors.

Two file kinds load through the same path (``load_network``):

* the release's ``checkpoint.pt``: a pickled dict whose ``"model"`` entry is the state dict of the
  package's ``DepthAnything3`` wrapper (keys ``model.backbone...``, ``model.deformation_head...``).
  It is read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
  containers; a file that needs anything else is refused, never executed.
* a ``.safetensors`` written by ``convert_checkpoint`` (same keys, unused parts dropped, fp16 or
  bf16): the normal load path once converted.

Either way the tensors are checked against the network built from the package config (every
key and shape), the size is recognised from the weights, and a `LoadReport` says exactly what was
loaded, dropped and left unused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError
from .model import EMBED_WIDTHS, SIZES, UNUSED_PARTS, FaceAnythingNet, build_network

CONVERTED_FORMAT = "faceanything-network"
CONVERTED_FORMAT_VERSION = "1"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_WIDTH_KEY = "model.backbone.pretrained.cls_token"
_SHOWN_KEYS = 5


def checkpoint_error(message: str, hint: str) -> UserError:
    return UserError(message, hint, code="bad_checkpoint")


@dataclass
class LoadReport:
    """What loading a checkpoint did. ``missing`` is always empty for a network that was built
    (loading fails otherwise); ``unexpected`` tensors were in the file but are not part of the
    network and were not loaded; ``dropped`` counts the tensors of the release's unused parts."""

    source: str
    file_format: str  # "torch" | "safetensors"
    size: str
    file_dtype: str
    tensors_loaded: int
    parameters: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = [
            f"{self.source}: {self.file_format}, Face Anything '{self.size}' network, {self.file_dtype}",
            f"  loaded {self.tensors_loaded} tensors ({self.parameters / 1e6:.1f} M parameters), "
            f"missing {len(self.missing)}",
        ]
        for part, count in sorted(self.dropped.items()):
            lines.append(f"  dropped {count} tensors of {part} (not used for faces)")
        if self.unexpected:
            lines.append(
                f"  ignored {len(self.unexpected)} tensors the network does not have: {_some(self.unexpected)}"
            )
        return lines


@dataclass
class ConvertReport:
    source: str
    destination: str
    size: str
    dtype: str
    tensors: int
    parameters: int
    bytes_written: int
    sha256: str
    load: LoadReport

    def lines(self) -> list[str]:
        return self.load.lines() + [
            f"wrote {self.destination}: {self.tensors} tensors, {self.parameters / 1e6:.1f} M parameters, "
            f"{self.dtype}, {self.bytes_written / 2**20:.1f} MiB",
            f"  sha256 {self.sha256}",
        ]


def load_network(path: str | os.PathLike, size: str | None = "giant") -> tuple[FaceAnythingNet, LoadReport]:
    """The network with the file's weights, in float32 on the CPU, in eval mode.
    ``size=None`` takes the size the weights have."""
    path = Path(path)
    state_dict, file_format, metadata = read_state_dict(path)
    network, state_dict, report = check_state_dict(state_dict, size, path, file_format)
    if metadata.get("size") not in (None, report.size):
        raise checkpoint_error(
            f"{path} says it holds a '{metadata['size']}' network but its weights are '{report.size}'",
            "The file was altered after conversion; convert the released checkpoint.pt again.",
        )
    network.load_state_dict(state_dict, strict=True, assign=True)
    return network.float().eval(), report


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """(state dict, "torch" | "safetensors", safetensors metadata) without executing anything."""
    if not path.is_file():
        raise checkpoint_error(
            f"checkpoint {path} does not exist",
            "Give the path of the released checkpoint.pt or of a .safetensors converted from it.",
        )
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _unwrap(_torch_load(path), path), "torch", {}


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor], size: str | None, path: Path, file_format: str
) -> tuple[FaceAnythingNet, dict[str, torch.Tensor], LoadReport]:
    """Check the tensors key by key and shape by shape against the network of ``size`` (None:
    the file's own size) built from the package config. Returns that network with empty (meta)
    parameters, the tensors to load into it and the report; raises a UserError naming the
    mismatch when the file holds another architecture."""
    found_size = _size_of(state_dict, path)
    if size is not None and size != found_size:
        raise checkpoint_error(
            f"{path} holds a '{found_size}' network (embedding width {EMBED_WIDTHS[found_size]}), "
            f"not the '{size}' network that was asked for (width {EMBED_WIDTHS[size]})",
            f"Use size '{found_size}' for this file, or give the '{size}' checkpoint.",
        )
    kept, dropped = _drop_unused(state_dict)
    network = build_network(found_size, empty=True)
    expected = network.state_dict()
    missing = [key for key in expected if key not in kept]
    unexpected = [key for key in kept if key not in expected]
    wrong_shape = [
        f"{key} {tuple(kept[key].shape)} (network: {tuple(expected[key].shape)})"
        for key in expected
        if key in kept and kept[key].shape != expected[key].shape
    ]
    if missing or wrong_shape:
        raise checkpoint_error(_mismatch_message(path, found_size, missing, wrong_shape), _mismatch_hint(missing))
    loaded = {key: kept[key] for key in expected}
    report = LoadReport(
        source=str(path),
        file_format=file_format,
        size=found_size,
        file_dtype=_dtype_summary(loaded.values()),
        tensors_loaded=len(loaded),
        parameters=sum(t.numel() for t in loaded.values()),
        unexpected=unexpected,
        dropped=dropped,
    )
    return network, loaded, report


def convert_checkpoint(
    source: str | os.PathLike, destination: str | os.PathLike, dtype: str = "float16", size: str | None = None
) -> ConvertReport:
    """Write the network's tensors of ``source`` (checkpoint.pt or .safetensors) to a
    ``destination`` .safetensors in ``dtype``, the unused parts dropped. ``size=None`` takes the
    size the weights have. The file is written whole or not at all."""
    source, destination = Path(source), Path(destination)
    if dtype not in DTYPES:
        raise checkpoint_error(f"unknown dtype {dtype!r}", f"Use one of {', '.join(DTYPES)}.")
    if destination.suffix != ".safetensors":
        raise checkpoint_error(
            f"{destination} must end in .safetensors", "Name the output like face_anything.safetensors."
        )
    state_dict, file_format, _ = read_state_dict(source)
    _, tensors, load_report = check_state_dict(state_dict, size, source, file_format)
    converted = {key: _cast(key, tensor, DTYPES[dtype], source) for key, tensor in tensors.items()}
    metadata = {
        "format": CONVERTED_FORMAT,
        "format_version": CONVERTED_FORMAT_VERSION,
        "size": load_report.size,
        "dtype": dtype,
        "converted_from": source.name,
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    save_file(converted, str(partial), metadata=metadata)
    os.replace(partial, destination)
    return ConvertReport(
        source=str(source),
        destination=str(destination),
        size=load_report.size,
        dtype=dtype,
        tensors=len(converted),
        parameters=load_report.parameters,
        bytes_written=destination.stat().st_size,
        sha256=weights_sha256(destination),
        load=load_report,
    )


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file, hashed once: the result is kept beside it in ``<file>.sha256``
    and reused while the file's size and modification time are unchanged."""
    path = Path(path)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = path.with_name(path.name + ".sha256")
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in key} == key and re.fullmatch(r"[0-9a-f]{64}", cached.get("sha256", "")):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            digest.update(block)
    result = digest.hexdigest()
    try:
        cache.write_text(json.dumps({**key, "sha256": result}))
    except OSError:
        pass  # a read-only folder: hash again next time
    return result


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m model_runtime convert CHECKPOINT OUTPUT``."""
    parser.add_argument("checkpoint", help="the released checkpoint.pt (or a .safetensors to re-convert)")
    parser.add_argument("output", help="the .safetensors to write")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="weight precision (default float16)")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=None,
        help="network size to expect (default: the size the weights have)",
    )


def run_convert(args: argparse.Namespace) -> int:
    """Convert and print the report; UserErrors propagate to the CLI's handler."""
    report = convert_checkpoint(args.checkpoint, args.output, dtype=args.dtype, size=args.size)
    print("\n".join(report.lines()))
    return 0


def _torch_load(path: Path) -> object:
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # Files in the legacy (non-zip) format cannot be memory-mapped.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL (\S+)", str(exc))
        if "Weights only load failed" in str(exc) and blocked:
            raise checkpoint_error(
                f"{path} holds more than tensors (it refers to {blocked.group(1)}); loading it would run code "
                "from the file, so it is refused",
                "Use the checkpoint.pt published by the Face Anything authors, or a .safetensors converted from it.",
            ) from None
        raise _unreadable(path, exc) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if metadata.get("format") not in (None, CONVERTED_FORMAT):
        raise checkpoint_error(
            f"{path} is a '{metadata['format']}' file, not Face Anything weights",
            "Give the released checkpoint.pt or a .safetensors written by `python -m model_runtime convert`.",
        )
    return tensors, "safetensors", metadata


def _unreadable(path: Path, exc: BaseException) -> UserError:
    return checkpoint_error(
        f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
        "The file is not a PyTorch checkpoint or is incomplete; download it again.",
    )


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The wrapper's state dict: the ``"model"`` entry of the release's dict, or the dict itself."""
    wrapped = isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping)
    state_dict = loaded["model"] if wrapped else loaded
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise checkpoint_error(
            f"{path} holds no state dict (expected a dict with a 'model' entry of tensors)",
            "Give the released checkpoint.pt of Face Anything.",
        )
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise checkpoint_error(
            f"{path}: the state dict holds {len(not_tensors)} entries that are not tensors ({_some(not_tensors)})",
            "Give the released checkpoint.pt of Face Anything.",
        )
    return dict(state_dict)


def _size_of(state_dict: Mapping[str, torch.Tensor], path: Path) -> str:
    width_tensor = state_dict.get(_WIDTH_KEY)
    width = int(width_tensor.shape[-1]) if width_tensor is not None and width_tensor.ndim > 0 else None
    for size, size_width in EMBED_WIDTHS.items():
        if width == size_width:
            return size
    prefixes = Counter(key.split(".")[0] for key in state_dict)
    raise checkpoint_error(
        f"{path} is not a Face Anything checkpoint: no '{_WIDTH_KEY}' tensor of a known width "
        f"(top-level keys: {', '.join(f'{p} ({n})' for p, n in prefixes.most_common(5))})",
        "Give the released checkpoint.pt; its keys start with 'model.backbone', 'model.head', "
        "'model.cam_enc', 'model.cam_dec' and 'model.deformation_head'.",
    )


def _drop_unused(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    kept, dropped = {}, Counter()
    for key, tensor in state_dict.items():
        part = key.split(".")[1] if key.startswith("model.") else ""
        if part in UNUSED_PARTS:
            dropped[f"model.{part}"] += 1
        else:
            kept[key] = tensor
    return kept, dict(dropped)


def _mismatch_message(path: Path, size: str, missing: list[str], wrong_shape: list[str]) -> str:
    parts = []
    if missing:
        by_part = Counter(".".join(key.split(".")[:2]) for key in missing)
        parts.append(
            f"{len(missing)} tensors missing ("
            + ", ".join(f"{part}: {count}" for part, count in by_part.most_common())
            + f"; e.g. {_some(missing)})"
        )
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} tensors of another shape ({_some(wrong_shape)})")
    return f"{path} does not match the Face Anything '{size}' network: " + "; ".join(parts)


def _mismatch_hint(missing: list[str]) -> str:
    if any(key.startswith("model.deformation_head.") for key in missing):
        return (
            "A file without 'model.deformation_head' is a plain Depth Anything 3 checkpoint; "
            "Face Anything needs the released checkpoint.pt, which has the canonical head."
        )
    return "Give the released Face Anything checkpoint.pt (or a .safetensors converted from it)."


def _cast(key: str, tensor: torch.Tensor, dtype: torch.dtype, source: Path) -> torch.Tensor:
    if not tensor.is_floating_point():
        return tensor.clone().contiguous()
    cast = tensor.to(dtype=dtype, copy=True).contiguous()  # copies: the release shares a few tensors
    if not bool(torch.isfinite(cast).all()) and bool(torch.isfinite(tensor).all()):
        raise checkpoint_error(
            f"{source}: tensor {key} does not fit in {dtype} (values up to {tensor.abs().max().item():.3g})",
            "Convert with --dtype bfloat16 (same range as float32).",
        )
    return cast


def _dtype_summary(tensors) -> str:
    counts = Counter(str(t.dtype).removeprefix("torch.") for t in tensors)
    return "/".join(name for name, _ in counts.most_common())


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN_KEYS])
    return shown + (f" and {len(items) - _SHOWN_KEYS} more" if len(items) > _SHOWN_KEYS else "")
