"""shared.cam: the one Grad-CAM of explain and train_3d_mri. Through an ensemble it is the mean of the fold models'
own maps, the ReLU applied at the layer's resolution before up-sampling (as the paper and pytorch-grad-cam do)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared.cam import grad_cam
from shared.models import Ensemble

pytestmark = pytest.mark.unit


def _net(dims: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
    return nn.Sequential(
        conv(2, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        pool,
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


@pytest.mark.parametrize("dims", [2, 3])
def test_ensemble_grad_cam_is_the_mean_of_the_fold_models_maps(dims):
    from captum.attr import LayerAttribution, LayerGradCam

    members = [_net(dims, seed) for seed in (0, 1, 2)]
    x = torch.randn(2, 2, *([8] * dims))
    got = grad_cam(Ensemble(members), [m[2] for m in members], x, 1)
    assert got.shape == (2, 1, *([8] * dims)) and bool((got >= 0).all())
    # the MRI stage's former computation: each fold model's own map, averaged, ReLU, then up-sampled
    own = torch.stack([LayerGradCam(m, m[2]).attribute(x, target=1, relu_attributions=False) for m in members])
    mode = "bilinear" if dims == 2 else "trilinear"
    want = LayerAttribution.interpolate(torch.relu(own.mean(0)), tuple(x.shape[2:]), interpolate_mode=mode)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    # one model: its own Grad-CAM
    single = grad_cam(members[0], [members[0][2]], x, 1)
    torch.testing.assert_close(single, LayerAttribution.interpolate(torch.relu(own[0]), tuple(x.shape[2:]), mode))


def test_grad_cam_refuses_vectors():
    with pytest.raises(ValueError, match="images .* or volumes"):
        grad_cam(_net(2, 0), [], torch.randn(2, 5), 0)
