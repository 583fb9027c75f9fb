"""Loading checkpoints without running code from them, conversion to safetensors, architecture
checks and the cached weights hash. Each checkpoint here is made by the test in the release's
layout (the small structure, random weights, the wrapper's state dict under "model")."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model_runtime.errors import UserError
from model_runtime.network.checkpoint import (
    add_convert_arguments,
    convert_checkpoint,
    load_network,
    run_convert,
    weights_sha256,
)
from model_runtime.network.model import build_network

MARKER = "ran-code-from-checkpoint"


class CodeRunningObject:
    """Unpickling this creates a marker file: what a hostile checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """checkpoint.pt as the release writes it, with a stand-in for the unused Gaussian head."""
    torch.manual_seed(0)
    state = build_network("small").state_dict()
    state["model.gs_head.scratch.output_conv2.0.weight"] = torch.zeros(4, 4)
    state["model.gs_adapter.scale"] = torch.ones(1)
    path = tmp_path_factory.mktemp("official") / "checkpoint.pt"
    torch.save({"model": state, "epoch": 12, "config": {"lr": 1e-4}}, path)
    return path


@pytest.fixture(scope="module")
def probe_images() -> torch.Tensor:
    return torch.randn(1, 2, 3, 42, 56, generator=torch.Generator().manual_seed(3))


def outputs(network, images):
    with torch.no_grad():
        return network(images)


def test_official_checkpoint_loads_with_zero_missing_keys(official):
    network, report = load_network(official, "small")
    assert report.missing == [] and report.unexpected == []
    assert report.dropped == {"model.gs_head": 1, "model.gs_adapter": 1}
    assert report.tensors_loaded == len(network.state_dict())
    assert "dropped 1 tensors of model.gs_head" in "\n".join(report.lines())
    saved = torch.load(official, weights_only=True)["model"]
    for key, value in network.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not network.training


def test_size_is_taken_from_the_weights_when_not_given(official):
    _, report = load_network(official, size=None)
    assert report.size == "small"


def test_float32_conversion_gives_identical_outputs(official, probe_images, tmp_path):
    report = convert_checkpoint(official, tmp_path / "small.safetensors", dtype="float32")
    assert report.tensors == len(build_network("small", empty=True).state_dict())
    written = load_file(tmp_path / "small.safetensors")
    assert not any(key.startswith(("model.gs_head", "model.gs_adapter")) for key in written)
    original, _ = load_network(official, "small")
    converted, load_report = load_network(tmp_path / "small.safetensors", "small")
    assert load_report.file_format == "safetensors" and load_report.missing == []
    expected, actual = outputs(original, probe_images), outputs(converted, probe_images)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_float16_conversion_gives_close_outputs(official, probe_images, tmp_path):
    report = convert_checkpoint(official, tmp_path / "small16.safetensors")
    assert report.dtype == "float16"
    assert report.bytes_written < official.stat().st_size * 0.6
    written = load_file(tmp_path / "small16.safetensors").values()
    assert all(t.dtype == torch.float16 for t in written if t.is_floating_point())
    original, _ = load_network(official, "small")
    converted, _ = load_network(tmp_path / "small16.safetensors", "small")
    expected, actual = outputs(original, probe_images), outputs(converted, probe_images)
    for key in ("depth", "canonical"):
        scale = expected[key].abs().max()
        assert (expected[key] - actual[key]).abs().max() < 0.02 * scale, key
        assert not torch.equal(expected[key], actual[key])  # it did go through float16


def test_checkpoint_that_would_run_code_is_refused_without_running_it(official, tmp_path):
    marker = tmp_path / MARKER
    state = torch.load(official, weights_only=True)["model"]
    hostile = tmp_path / "hostile.pt"
    torch.save({"model": state, "trainer": CodeRunningObject(marker)}, hostile)
    with pytest.raises(UserError) as error:
        load_network(hostile, "small")
    assert "refused" in error.value.message and "refers to getattr" in error.value.message
    assert error.value.code == "bad_checkpoint"
    assert not marker.exists()
    with pytest.raises(UserError):
        convert_checkpoint(hostile, tmp_path / "out.safetensors")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_base_weights_loaded_as_small_name_both_sizes(tmp_path):
    # Base-shaped tensors that take no memory: one stored zero expanded to each shape.
    shapes = {key: value.shape for key, value in build_network("base", empty=True).state_dict().items()}
    base = tmp_path / "base.pt"
    torch.save({"model": {key: torch.zeros(()).expand(shape) for key, shape in shapes.items()}}, base)
    with pytest.raises(UserError) as error:
        load_network(base, "small")
    assert "'base'" in error.value.message and "'small'" in error.value.message
    assert "size 'base'" in error.value.hint


def test_depth_anything_checkpoint_without_canonical_head_is_named(official, tmp_path):
    state = torch.load(official, weights_only=True)["model"]
    plain = {key: value for key, value in state.items() if not key.startswith("model.deformation_head.")}
    path = tmp_path / "da3.pt"
    torch.save({"model": plain}, path)
    with pytest.raises(UserError) as error:
        load_network(path, "small")
    assert "missing" in error.value.message and "model.deformation_head" in error.value.message
    assert "canonical head" in error.value.hint


def test_safetensors_of_another_architecture_is_refused(official, tmp_path):
    report_path = tmp_path / "good.safetensors"
    convert_checkpoint(official, report_path, dtype="float32")
    tensors = load_file(report_path)
    key = "model.deformation_head.scratch.output_conv2.2.weight"
    tensors[key] = torch.zeros(3, 32, 1, 1)  # a 3-channel canonical head
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata={"format": "faceanything-network", "size": "small"})
    with pytest.raises(UserError) as error:
        load_network(bad, "small")
    assert key in error.value.message and "(3, 32, 1, 1)" in error.value.message


def test_unreadable_files_get_a_clear_message(tmp_path):
    junk = tmp_path / "checkpoint.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_network(junk, "small")
    with pytest.raises(UserError, match="does not exist"):
        load_network(tmp_path / "missing.pt", "small")
    no_model = tmp_path / "other.pt"
    torch.save({"weights": [1, 2, 3]}, no_model)
    with pytest.raises(UserError, match="not tensors|no state dict"):
        load_network(no_model, "small")


def test_weights_hash_is_cached_beside_the_file(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    real = weights_sha256(weights)
    cache = tmp_path / "w.safetensors.sha256"
    assert json.loads(cache.read_text())["sha256"] == real
    # While size and mtime are unchanged the cached value is used, not the file.
    cached = json.loads(cache.read_text())
    cache.write_text(json.dumps({**cached, "sha256": "0" * 64}))
    assert weights_sha256(weights) == "0" * 64
    # A rewritten file (new mtime) is hashed again.
    weights.write_bytes(b"other weights")
    os.utime(weights, ns=(cached["mtime_ns"] + 10**9, cached["mtime_ns"] + 10**9))
    assert weights_sha256(weights) not in (real, "0" * 64)


def test_convert_command_prints_its_report(official, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    args = parser.parse_args([str(official), str(tmp_path / "out.safetensors"), "--dtype", "bfloat16"])
    assert run_convert(args) == 0
    printed = capsys.readouterr().out
    assert "bfloat16" in printed and "dropped 1 tensors of model.gs_head" in printed and "sha256" in printed
    assert (tmp_path / "out.safetensors").is_file() and not (tmp_path / "out.safetensors.partial").exists()
