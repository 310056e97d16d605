"""One interface for every attribution method: ``METHODS[name](model).attribute(inputs, target)``.

Each entry wraps a Captum class and carries what the report says of it (``description``) and whether its values
are signed; adding a method never changes its callers. Attributions are computed in batches over inputs of any
shape (vectors (n, features), images (n, C, H, W), volumes (n, C, D, H, W)), so memory stays bounded whatever the
number of samples.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from shared.logs import progress


class Saliency:
    """Absolute input gradient of the target logit (Simonyan et al. 2014), via ``captum.attr.Saliency``."""

    signed = False
    description = ("Absolute gradient of the true class's logit with respect to each input value, averaged over the "
                   "held-out test samples of each class (for images, returned to genes through the pixel-to-gene map "
                   "of training). Saliency shows where the output is sensitive, including to genes whose absence is "
                   "evidence; it is not a measure of effect size.")

    def __init__(self, model: nn.Module):
        from captum.attr import Saliency as CaptumSaliency

        self._impl = CaptumSaliency(model)

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl.attribute(inputs, target=target, abs=True)


class Gradient(Saliency):
    """Signed input gradient of the target logit: positive where more of the gene raises the class's score."""

    signed = True
    description = ("Signed gradient of the true class's logit: positive where more of a gene raises the class's "
                   "score. Class means over held-out test samples; genes are ranked by it, so a class's top genes are "
                   "its positive evidence (absolute saliency ranks negative evidence, such as other classes' markers, "
                   "just as high).")

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl.attribute(inputs, target=target, abs=False)


class InputXGradient:
    """Gradient times input (``captum.attr.InputXGradient``): the first-order contribution of each input value."""

    signed = True
    description = ("Gradient times input: each gene's first-order contribution to the true class's logit in each "
                   "held-out test sample, averaged per class; genes ranked by it.")

    def __init__(self, model: nn.Module):
        from captum.attr import InputXGradient as CaptumIxG

        self._impl = CaptumIxG(model)

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl.attribute(inputs, target=target)


METHODS: dict[str, Callable[[nn.Module], object]] = {
    "saliency": Saliency,
    "gradient": Gradient,
    "input_x_gradient": InputXGradient,
}


def attribute_batched(method, inputs: np.ndarray, targets: np.ndarray, device: torch.device, batch_size: int,
                      desc: str, scale: float = 1.0) -> np.ndarray:
    """inputs: (n, ...) as stored (uint8 images, float vectors or volumes) -> attributions (n, ...) float32 with
    respect to the model's input ``inputs * scale`` (the scaling recorded in the model's spec at training)."""
    out = np.empty(inputs.shape, dtype=np.float32)
    for start in progress(range(0, len(inputs), batch_size), desc, unit="batch"):
        x = torch.from_numpy(np.asarray(inputs[start:start + batch_size])).to(device).float()
        if scale != 1.0:
            x = x.mul_(scale)
        x.requires_grad_(True)
        t = torch.from_numpy(np.asarray(targets[start:start + batch_size])).to(device)
        out[start:start + batch_size] = method.attribute(x, t).detach().cpu().numpy()
    return out
