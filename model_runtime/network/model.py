"""The Face Anything network: Depth Anything 3 (from the Apache-2.0 `depth-anything-3` package,
built from the package's own configs) plus the canonical ("deformation") head of the release.

Pure model code: no file I/O, no device choice, no pre- or post-processing (see
``backends/faceanything.py`` for the predictor around it).

The module tree mirrors the release's checkpoint: ``FaceAnythingNet.model`` is the package's
``DepthAnything3Net`` with one extra child, ``deformation_head``, so the state dict keys are
``model.backbone...``, ``model.head...``, ``model.cam_enc...``, ``model.cam_dec...`` and
``model.deformation_head...``. The giant config's Gaussian-splatting parts (``gs_head``,
``gs_adapter``) are never built: face reconstruction does not use them.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

with warnings.catch_warnings():
    # The package registers an omegaconf resolver with a deprecated call at import time.
    warnings.simplefilter("ignore", UserWarning)
    from depth_anything_3.cfg import create_object, load_config
from depth_anything_3.model.dpt import DPT
from depth_anything_3.registry import MODEL_REGISTRY
from depth_anything_3.utils import logger as _da3_logger

if "DA3_LOG_LEVEL" not in os.environ:
    # The package prints INFO lines ("Selecting reference view ...") to stdout on every forward;
    # stdout belongs to the runtime's protocol, so keep only its errors (which go to stderr).
    _da3_logger.logger.level = _da3_logger.LOG_LEVELS["ERROR"]

PATCH_SIZE = 14
SIZES = {"small": "da3-small", "base": "da3-base", "large": "da3-large", "giant": "da3-giant"}
# Width of the ViT embedding per size: how a checkpoint's size is recognised from its weights.
EMBED_WIDTHS = {"small": 384, "base": 768, "large": 1024, "giant": 1536}
UNUSED_PARTS = ("gs_head", "gs_adapter")


class FaceAnythingNet(nn.Module):
    """Depth, rays and canonical coordinates for a window of frames that attend to each other.

    ``forward(images)`` with images (B, S, 3, H, W), ImageNet-normalised RGB, H and W multiples of
    14, returns a dict of float32 tensors:

    * ``depth`` (B, S, H, W) and ``depth_conf`` (B, S, H, W): network depth units, conf >= 1.
    * ``ray`` (B, S, h, w, 6) and ``ray_conf`` (B, S, h, w): per-cell ray direction (0:3) and
      origin (3:6) on a grid coarser than the image (h, w), conf >= 1.
    * ``canonical`` (B, S, H, W, 3) and ``canonical_conf`` (B, S, H, W): the release's canonical
      face coordinate, conf >= 1.

    The backbone runs under ``autocast_dtype`` when one is given (GPU); the heads always run in
    float32, as in the release.
    """

    def __init__(self, size: str, model: nn.Module):
        super().__init__()
        self.size = size
        self.model = model

    def forward(self, images: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        net = self.model
        height, width = images.shape[-2:]
        with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            feats, _ = net.backbone(images, cam_token=None, export_feat_layers=[])
        feats = [tuple(part.float() for part in feat) for feat in feats]
        with torch.autocast(images.device.type, enabled=False):
            depth = net.head(feats, height, width, patch_start_idx=0)
            canonical = net.deformation_head(feats, height, width, patch_start_idx=0)
        return {
            "depth": depth["depth"],
            "depth_conf": depth["depth_conf"],
            "ray": depth["ray"],
            "ray_conf": depth["ray_conf"],
            "canonical": canonical["deformation"],
            "canonical_conf": canonical["deformation_conf"],
        }


def build_network(size: str, empty: bool = False) -> FaceAnythingNet:
    """The network of one size. ``empty=True`` leaves every parameter on the meta device (no
    memory, no initialisation) for a checkpoint to be assigned into; otherwise the weights are
    the package's random initialisation."""
    if size not in SIZES:
        raise ValueError(f"unknown network size {size!r}; expected one of {', '.join(SIZES)}")
    config = load_config(MODEL_REGISTRY[SIZES[size]])
    for part in UNUSED_PARTS:
        config.pop(part, None)
    with _parameters_on_meta() if empty else nullcontext():
        model = create_object(config)
        model.deformation_head = DPT(
            int(config.head.dim_in),
            output_dim=4,
            head_name="deformation",
            use_sky_head=False,
            activation="linear",
        )
    return FaceAnythingNet(size, model)


@contextmanager
def _parameters_on_meta():
    """Move each parameter to the meta device as it is registered. (``torch.device("meta")`` as
    a context does not work here: the package reads a tensor value while building the ViT.)"""
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register
