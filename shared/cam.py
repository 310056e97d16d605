"""Grad-CAM over any number of spatial dimensions, the one implementation explain (2-D images, 3-D volumes) and
train_3d_mri use.

Selvaraju et al. (2017): a layer's feature maps weighted by the class logit's spatially pooled gradients, the ReLU
keeping the evidence for the class, then up-sampled to the input (bilinear for images, trilinear for volumes,
align_corners=False), in that order, as the paper and pytorch-grad-cam (``BaseCAM.compute_cam_per_layer``: ReLU, then
``scale_cam_image``) do. The target layers are one per fold model when the model is an ``Ensemble``: Captum's
``LayerGradCam`` of the ensemble's logit at each fold model's layer, without its ReLU, summed at the layer's
resolution. The ensemble's logit being the mean of its fold models', each layer's map is 1/n of that fold model's
own, so the sum is the mean of the fold models' maps.
"""

from __future__ import annotations

import torch
from torch import nn


def grad_cam(model: nn.Module, layers: list[nn.Module], inputs: torch.Tensor, target) -> torch.Tensor:
    """(n, 1, *spatial) non-negative maps of class ``target`` (an int or one per row) on the input grid."""
    from captum.attr import LayerAttribution, LayerGradCam

    mode = {4: "bilinear", 5: "trilinear"}.get(inputs.ndim)
    if mode is None:
        raise ValueError(f"Grad-CAM needs images (n, C, H, W) or volumes (n, C, D, H, W), not {inputs.ndim}-D inputs")
    total = None
    for layer in layers:
        cam = LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=False)
        if total is not None and cam.shape != total.shape:
            raise ValueError(f"Grad-CAM layers of different resolutions: {tuple(total.shape)} and {tuple(cam.shape)}")
        total = cam if total is None else total + cam
    return LayerAttribution.interpolate(torch.relu(total), tuple(inputs.shape[2:]), interpolate_mode=mode)
