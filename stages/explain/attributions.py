"""One interface for every attribution method: ``METHODS[name](model, options).attribute(inputs, target)``.

Each method wraps Captum where Captum has it and carries what the report says of it (``description``), whether its
values are signed, and which input kinds it applies to; adding a method never changes its callers. Inputs may be
vectors (n, features), images (n, C, H, W) or volumes (n, C, D, H, W): attributions have the inputs' shape.
Attributions are computed in batches and handed over a chunk of rows at a time (``attribute_chunks``), so memory
stays bounded whatever the number of samples.

The model is the trained classifier (an ``Ensemble`` of fold models, each ``Sequential(Standardize, network)``):
its first layer holds the training mean, which is the "mean" baseline and the value deletion curves put in place
of a removed input.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.errors import UserError
from shared.logs import progress
from shared.models import Ensemble, Standardize


def members(model: nn.Module) -> list[nn.Module]:
    return list(model.members) if isinstance(model, Ensemble) else [model]


def training_mean(model: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """The training mean of the model's input, per channel (images, volumes) or feature (vectors), broadcast to
    ``like``: the mean over the fold models' ``Standardize`` layers."""
    means = [m.mean for member in members(model) for m in member.modules() if isinstance(m, Standardize)]
    if not means:
        return torch.zeros_like(like)
    return torch.stack(means).mean(0).to(like.device, like.dtype).expand_as(like).contiguous()


class Method:
    """Base of the methods: ``signed``, ``description``, ``kinds`` (input kinds it applies to), ``stochastic``
    (its result depends on random draws: its stability across draws is measured)."""

    signed = True
    stochastic = False
    description = ""
    kinds = ("vector", "image", "volume")

    def __init__(self, model: nn.Module, options: Any = None):
        self.model, self.options = model, options

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Saliency(Method):
    """Absolute input gradient of the target logit (Simonyan et al. 2014), via ``captum.attr.Saliency``."""

    signed = False
    description = (
        "Saliency (Simonyan et al. 2014): the absolute gradient of the true class's logit with respect to "
        "each input value, averaged over the held-out test samples of each class (for images, returned "
        "to genes through the pixel-to-gene map of training). It shows where the output is sensitive, "
        "including to genes whose absence is evidence; it is not a measure of effect size."
    )

    def attribute(self, inputs, target):
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(self.model).attribute(inputs, target=target, abs=True)


class Gradient(Method):
    """Signed input gradient of the target logit: positive where more of the gene raises the class's score."""

    description = (
        "Signed gradient of the true class's logit: positive where more of a gene raises the class's "
        "score. Genes ranked by it are the class's positive evidence (absolute saliency ranks negative "
        "evidence, such as other classes' markers, just as high)."
    )

    def attribute(self, inputs, target):
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(self.model).attribute(inputs, target=target, abs=False)


class InputXGradient(Method):
    """Gradient times input (``captum.attr.InputXGradient``): the first-order contribution of each input value."""

    description = (
        "Gradient times input: each gene's first-order contribution to the true class's logit in each "
        "held-out test sample, averaged per class; genes ranked by it."
    )

    def attribute(self, inputs, target):
        from captum.attr import InputXGradient as CaptumIxG

        return CaptumIxG(self.model).attribute(inputs, target=target)


class SmoothGrad(Method):
    """SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over noisy copies of the input
    (``captum.attr.NoiseTunnel``); noise sd = ``noise_level`` x the input's range (max - min) per sample."""

    stochastic = True
    description = (
        "SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over copies of each input with "
        "Gaussian noise (sd a fixed fraction of the input's range), which removes the gradient's "
        "high-frequency noise; genes ranked by it."
    )

    def attribute(self, inputs, target):
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        o = self.options
        flat = inputs.detach().reshape(len(inputs), -1)
        spread = float((flat.max(1).values - flat.min(1).values).mean())
        return NoiseTunnel(CaptumSaliency(self.model)).attribute(
            inputs,
            target=target,
            abs=False,
            nt_type="smoothgrad",
            nt_samples=o.samples,
            nt_samples_batch_size=max(1, min(o.samples, 256 // max(1, len(inputs)))),
            stdevs=o.noise_level * spread,
        )


class IntegratedGradients(Method):
    """Integrated Gradients (Sundararajan et al. 2017), ``captum.attr.IntegratedGradients``: completeness holds,
    the attributions of a sample sum to its logit minus the baseline's."""

    description = (
        "Integrated Gradients (Sundararajan et al. 2017): the gradient integrated along the straight path "
        "from a baseline (zeros, the training mean, or a blurred copy of the input) to the input, times "
        "their difference; a sample's attributions add up to its logit minus the baseline's."
    )

    def baseline(self, inputs: torch.Tensor) -> torch.Tensor:
        kind = self.options.baseline
        if kind == "zeros":
            return torch.zeros_like(inputs)
        if kind == "mean":
            return training_mean(self.model, inputs)
        if inputs.ndim < 4:
            raise UserError(
                "explain.integrated_gradients.baseline: blurred applies to images and volumes, not to "
                "vectors; use zeros or mean"
            )
        from scipy.ndimage import gaussian_filter

        sigma = [0, 0, *[max(1.0, s / 8) for s in inputs.shape[2:]]]
        return torch.from_numpy(gaussian_filter(inputs.detach().cpu().numpy(), sigma)).to(inputs.device)

    def attribute(self, inputs, target):
        from captum.attr import IntegratedGradients as CaptumIG

        return CaptumIG(self.model).attribute(
            inputs, baselines=self.baseline(inputs), target=target, n_steps=self.options.steps, internal_batch_size=256
        )


def spatial_layers(member: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the member's modules whose output keeps spatial extent (> 1 voxel), in the order their forward
    ends (a block after its children); Grad-CAM's automatic layer is the last of them."""
    order: list[str] = []
    hooks = []
    for name, module in member.named_modules():
        if name and not isinstance(module, Standardize):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, out, name=name: (
                        order.append(name)
                        if isinstance(out, torch.Tensor)
                        and out.ndim == example.ndim
                        and out.shape[1] > 1
                        and int(np.prod(out.shape[2:])) > 1
                        else None
                    )
                )
            )
    try:
        with torch.no_grad():
            member.eval()(example[:1])
    finally:
        for h in hooks:
            h.remove()
    return order


class GradCAM(Method):
    """Grad-CAM (Selvaraju et al. 2017): the target layer's activations weighted by their spatially pooled gradients,
    summed over channels, ReLU, up-sampled to the input (bilinear / trilinear, align_corners=False). For an
    ensemble, each fold model's map of the ensemble's logit (``captum.attr.LayerGradCam``) is summed before the
    ReLU. Layer: ``auto`` (the last layer whose output keeps spatial extent) or a module name of a fold model."""

    signed = False
    kinds = ("image", "volume")
    description = (
        "Grad-CAM (Selvaraju et al. 2017): the activations of a late convolutional layer weighted by their "
        "spatially pooled gradients for the true class, up-sampled to the input. Coarse (the layer's "
        "resolution) and class-discriminative; on small images the last layer with spatial extent can "
        "be a few pixels wide, so its maps are blurry by construction."
    )

    def __init__(self, model, options=None):
        super().__init__(model, options)
        self.layer_name: str | None = None
        self._layers: tuple[tuple, list[nn.Module]] | None = None

    def layers(self, inputs: torch.Tensor) -> list[nn.Module]:
        """The target layer of each fold model; found once per input shape (a hooked forward pass)."""
        if self._layers is not None and self._layers[0] == tuple(inputs.shape[1:]):
            return self._layers[1]
        out = []
        for member in members(self.model):
            candidates = spatial_layers(member, inputs)
            wanted = getattr(self.options, "layer", "auto")
            name = candidates[-1] if wanted == "auto" and candidates else wanted
            modules = dict(member.named_modules())
            name = name if name in modules else f"1.{name}" if f"1.{name}" in modules else None
            if name is None or (wanted == "auto" and not candidates):
                shown = ", ".join(c.removeprefix("1.") for c in candidates[-8:]) or "none"
                raise UserError(
                    f"explain.grad_cam.layer: no layer '{wanted}' with spatial extent in the model "
                    f"(the last candidates: {shown})"
                )
            self.layer_name = name.removeprefix("1.")
            out.append(modules[name])
        self._layers = (tuple(inputs.shape[1:]), out)
        return out

    def cam(self, inputs, target):
        from captum.attr import LayerAttribution, LayerGradCam

        total = None
        for layer in self.layers(inputs):
            cam = LayerGradCam(self.model, layer).attribute(inputs, target=target, relu_attributions=False)
            mode = "bilinear" if inputs.ndim == 4 else "trilinear"
            up = LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), interpolate_mode=mode)
            total = up if total is None else total + up
        return torch.relu(total)

    def attribute(self, inputs, target):
        return self.cam(inputs, target).expand_as(inputs).contiguous()


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided backpropagation (``captum.attr.GuidedBackprop``, ReLU gradients clipped at 0) times
    the up-sampled Grad-CAM, element by element, computed for real (the TensorFlow prior art's "guided" part was a
    no-op in eager mode)."""

    signed = True
    description = (
        "Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation (gradients through ReLUs kept only "
        "where positive) times the up-sampled Grad-CAM map: Grad-CAM's class-discriminative regions at "
        "the input's resolution."
    )

    def attribute(self, inputs, target):
        from captum.attr import GuidedBackprop

        guided = GuidedBackprop(self.model).attribute(inputs, target=target)
        return guided * self.cam(inputs, target)


class Occlusion(Method):
    """Occlusion (Zeiler & Fergus 2014), ``captum.attr.Occlusion``: the drop of the target logit when a window of
    inputs is set to 0, spread over the window; windows of ``window`` pixels (or genes) a side, every ``stride``."""

    description = (
        "Occlusion (Zeiler & Fergus 2014): the fall of the true class's logit when a window of inputs "
        "(pixels, or consecutive genes for vectors) is set to zero, slid across the input; model-agnostic "
        "and slow, a check on the gradient methods."
    )

    def attribute(self, inputs, target):
        from captum.attr import Occlusion as CaptumOcclusion

        o = self.options
        spatial = inputs.ndim - 2
        if spatial <= 0:
            window, strides = (min(o.window, inputs.shape[1]),), (o.stride,)
        else:
            window = (inputs.shape[1], *[min(o.window, s) for s in inputs.shape[2:]])
            strides = (inputs.shape[1], *[o.stride] * spatial)
        return CaptumOcclusion(self.model).attribute(
            inputs,
            sliding_window_shapes=window,
            strides=strides,
            target=target,
            baselines=0.0,
            perturbations_per_eval=16,
        )


METHODS: dict[str, type[Method]] = {
    "saliency": Saliency,
    "gradient": Gradient,
    "input_x_gradient": InputXGradient,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "grad_cam": GradCAM,
    "guided_grad_cam": GuidedGradCAM,
    "occlusion": Occlusion,
}


@contextmanager
def frozen(model: nn.Module):
    """The model's parameters without gradients for the duration: attributions need gradients with respect to the
    inputs (and layer activations) only, so the backward pass need not produce or keep weight gradients (on CPU the
    time saved measured within noise; the memory is not spent). Restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


def attribute_chunks(
    method: Method,
    inputs,
    targets: np.ndarray,
    device: torch.device,
    batch_size: int,
    chunk_size: int,
    desc: str,
    scale: float = 1.0,
):
    """Yields (start, attributions of rows start:start + len) float32, ``chunk_size`` rows at a time (rounded up to
    whole batches, so the batches are those of one pass over all rows): memory bounded by a chunk whatever the number
    of samples. inputs: (n, ...) as stored (uint8 images, float vectors or volumes; an array or anything sliced like
    one, e.g. rows of a memory map); attributions are with respect to the model's input ``inputs * scale`` (the
    scaling recorded in the model's spec at training)."""
    step = -(-max(chunk_size, 1) // batch_size) * batch_size
    n = len(inputs)
    block = out = None
    with frozen(method.model):
        for b in progress(range(0, n, batch_size), desc, unit="batch"):
            start, s = b - b % step, b % step
            if s == 0:
                block = np.asarray(inputs[start : start + step])
                out = np.empty(block.shape, dtype=np.float32)
            x = to_tensor(block[s : s + batch_size], device, scale)
            x.requires_grad_(True)
            t = torch.from_numpy(np.asarray(targets[b : b + batch_size])).to(device)
            out[s : s + batch_size] = method.attribute(x, t).detach().cpu().numpy()
            if s + batch_size >= len(block):
                yield start, out


def attribute_batched(
    method: Method,
    inputs: np.ndarray,
    targets: np.ndarray,
    device: torch.device,
    batch_size: int,
    desc: str,
    scale: float = 1.0,
) -> np.ndarray:
    """All the attributions at once: (n, ...) float32 (``attribute_chunks`` in one array)."""
    out = np.empty(inputs.shape, dtype=np.float32)
    for start, block in attribute_chunks(method, inputs, targets, device, batch_size, len(inputs), desc, scale):
        out[start : start + len(block)] = block
    return out


def to_tensor(array: np.ndarray, device: torch.device, scale: float = 1.0) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(array)).to(device).float()
    return x.mul_(scale) if scale != 1.0 else x
