"""One interface for every attribution method: ``METHODS[name](model).attribute(inputs, target)``.

Each entry wraps a Captum class; adding a method never changes its callers. Attributions are computed in
batches so memory stays bounded whatever the number of samples.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from shared.logs import progress


class Saliency:
    """Absolute input gradient of the target logit (Simonyan et al. 2014), via ``captum.attr.Saliency``.

    Large for any gene the logit is sensitive to, whether its presence argues for the class or against it.
    """

    signed = False

    def __init__(self, model: nn.Module):
        from captum.attr import Saliency as CaptumSaliency

        self._impl = CaptumSaliency(model)

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl.attribute(inputs, target=target, abs=True)


class Gradient(Saliency):
    """Signed input gradient of the target logit: positive where more of the gene raises the class's score.

    Genes are ranked by it, so a class's top genes are its positive evidence; the absolute saliency above ranks
    negative evidence (other classes' markers) just as high.
    """

    signed = True

    def attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._impl.attribute(inputs, target=target, abs=False)


class InputXGradient:
    """Gradient times input (``captum.attr.InputXGradient``): the first-order contribution of each pixel."""

    signed = True

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


def attribute_batched(method, images: np.ndarray, targets: np.ndarray, device: torch.device, batch_size: int,
                      desc: str) -> np.ndarray:
    """images: (n, C, H, W) uint8 -> attributions (n, C, H, W) float32 w.r.t. the [0, 1] image."""
    out = np.empty(images.shape, dtype=np.float32)
    for start in progress(range(0, len(images), batch_size), desc, unit="batch"):
        x = torch.from_numpy(np.asarray(images[start:start + batch_size])).to(device).float().div_(255.0)
        x.requires_grad_(True)
        t = torch.from_numpy(np.asarray(targets[start:start + batch_size])).to(device)
        out[start:start + batch_size] = method.attribute(x, t).detach().cpu().numpy()
    return out
