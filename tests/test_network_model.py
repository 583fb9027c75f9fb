"""The Face Anything network built from the depth-anything-3 package, the ray -> intrinsics
solver and the release's preprocessing (CPU, small structure, random weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_runtime.backends.faceanything import network_input_size, preprocess
from model_runtime.network.model import PATCH_SIZE, build_network
from model_runtime.network.rays import intrinsics_from_rays, rays_for_camera


@pytest.fixture(scope="module")
def small_network():
    torch.manual_seed(0)
    return build_network("small").eval()


def test_state_dict_has_the_release_layout(small_network):
    parts = {".".join(key.split(".")[:2]) for key in small_network.state_dict()}
    assert parts == {"model.backbone", "model.head", "model.cam_enc", "model.cam_dec", "model.deformation_head"}


def test_canonical_head_is_built_as_in_the_release(small_network):
    head = small_network.model.deformation_head
    assert head.projects[0].in_channels == 768  # the small config's dim_in (local + global tokens)
    assert [p.out_channels for p in head.projects] == [256, 512, 1024, 1024]
    assert head.scratch.output_conv2[-1].out_channels == 4
    assert head.activation == "linear" and head.conf_activation == "expp1"
    assert not head.use_sky_head and not hasattr(head.scratch, "sky_output_conv2")


def test_giant_structure_matches_the_released_size():
    giant = build_network("giant", empty=True)
    parameters = sum(p.numel() for p in giant.parameters())
    assert 1.30e9 < parameters < 1.45e9  # the release: about 1.39 B
    assert giant.model.deformation_head.projects[0].in_channels == 3072
    assert all(p.device.type == "meta" for p in giant.parameters())
    assert not hasattr(giant.model, "gs_head") or giant.model.gs_head is None


def test_forward_shapes_and_confidences(small_network):
    images = torch.randn(1, 2, 3, 70, 98)
    with torch.no_grad():
        out = small_network(images)
    assert out["depth"].shape == (1, 2, 70, 98)
    assert out["canonical"].shape == (1, 2, 70, 98, 3)
    assert out["canonical_conf"].shape == out["depth_conf"].shape == (1, 2, 70, 98)
    assert out["ray"].shape[:2] == (1, 2) and out["ray"].shape[-1] == 6
    assert out["ray_conf"].shape == out["ray"].shape[:-1]
    for key in ("depth_conf", "canonical_conf", "ray_conf"):
        assert bool((out[key] >= 1).all()), key  # 1 + exp(x)
    assert all(value.dtype == torch.float32 for value in out.values())


@pytest.mark.parametrize("rotation_deg", [0.0, 12.0])
def test_intrinsics_are_recovered_from_ideal_rays(rotation_deg):
    k_normalised = np.array([[1.7, 0.0, 1.04], [0.0, 2.1, 0.97], [0.0, 0.0, 1.0]])
    angle = np.radians(rotation_deg)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    rays = rays_for_camera(k_normalised, rotation, (36, 48))
    rays[..., :3] *= np.random.default_rng(0).uniform(0.5, 2.0, rays.shape[:2])[..., None]  # lengths do not matter
    confidence = np.ones(rays.shape[:2])
    k = intrinsics_from_rays(rays, confidence, (640, 480))
    expected = np.array([[1.7 * 320, 0, 1.04 * 320 - 0.5], [0, 2.1 * 240, 0.97 * 240 - 0.5], [0, 0, 1]])
    np.testing.assert_allclose(k, expected, rtol=1e-8, atol=1e-6)


def test_low_confidence_cells_do_not_move_the_intrinsics():
    k_normalised = np.array([[1.5, 0.0, 1.0], [0.0, 1.5, 1.0], [0.0, 0.0, 1.0]])
    rays = rays_for_camera(k_normalised, np.eye(3), (20, 20))
    confidence = np.ones((20, 20))
    rays[:5, :, :3] = np.random.default_rng(1).normal(size=(5, 20, 3))  # garbage where unsure
    confidence[:5] = 0.0
    k = intrinsics_from_rays(rays, confidence, (200, 200))
    np.testing.assert_allclose(k[0, 0], 150.0, rtol=1e-8)


def test_rays_without_a_camera_give_none():
    rays = np.zeros((10, 10, 6))
    rays[..., 2] = 1.0  # every cell looks straight ahead: no field of view
    assert intrinsics_from_rays(rays, np.ones((10, 10)), (100, 100)) is None
    assert intrinsics_from_rays(np.zeros((10, 10, 6)), np.ones((10, 10)), (100, 100)) is None


@pytest.mark.parametrize(
    "frame, expected",
    [((360, 288), (504, 406)), ((1920, 1080), (504, 280)), ((288, 360), (406, 504)), ((100, 100), (504, 504))],
)
def test_network_input_size_is_upper_bound_resize_to_multiples_of_14(frame, expected):
    size = network_input_size(*frame, resolution=504)
    assert size == expected
    assert all(side % PATCH_SIZE == 0 for side in size)


def test_preprocess_is_imagenet_normalised_rgb():
    image = np.zeros((40, 60, 3), np.uint8)
    image[..., 0] = 124  # ImageNet mean of red is 0.485 * 255 = 123.7
    image[..., 2] = 255
    out = preprocess(image, (28, 14))
    assert out.shape == (3, 14, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (124 / 255 - 0.485) / 0.229, atol=1e-5)
    np.testing.assert_allclose(out[2], (1.0 - 0.406) / 0.225, atol=1e-5)
