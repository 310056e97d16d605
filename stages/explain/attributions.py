"""Running the attribution methods (``stages/explain/methods.py``: ``METHODS[name](model, options)``) over many
samples, and what they need of the model. Inputs may be vectors (n, features), images (n, C, H, W) or volumes (n, C,
D, H, W): attributions have the inputs' shape. Attributions are computed in batches and handed over a chunk of rows
at a time (``attribute_chunks``), so memory stays bounded whatever the number of samples.

The model is the trained classifier (an ``Ensemble`` of fold models, each ``Sequential(Standardize, network)``):
its first layer holds the training mean, which is the "mean" baseline and the value deletion curves put in place
of a removed input.
"""

from __future__ import annotations

import copy
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

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


def spatial_layers(member: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the member's modules whose output keeps spatial extent (> 1 voxel), in the order their forward
    ends (a block after its children); Grad-CAM's automatic layer is the last of them. A module called more than
    once in a forward pass (MONAI's EfficientNet applies one activation module after its stem and its head) has no
    single feature map and is left out."""
    calls: list[tuple[str, bool]] = []
    hooks = []
    for name, module in member.named_modules():
        if name and not isinstance(module, Standardize):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, out, name=name: calls.append(
                        (
                            name,
                            isinstance(out, torch.Tensor)
                            and out.ndim == example.ndim
                            and out.shape[1] > 1
                            and int(np.prod(out.shape[2:])) > 1,
                        )
                    )
                )
            )
    try:
        with torch.no_grad():
            member.eval()(example[:1])
    finally:
        for h in hooks:
            h.remove()
    times = Counter(name for name, _ in calls)
    return [name for name, spatial in calls if spatial and times[name] == 1]


class _OnePerCall(nn.Module):
    """A module called several times in one forward pass, as one copy per call: call i of a pass runs copy i."""

    def __init__(self, module: nn.Module, calls: int):
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.calls = 0

    def forward(self, *args, **kwargs):
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def one_module_per_call(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` computing the same function in which no module is called twice in a forward pass (a
    module that was is replaced by one copy per call, the calls counted from each forward pass's start): methods
    that hook modules and keep one input and output per module, as DeepLIFT does, need it (torchvision's ResNet
    blocks call their ReLU twice)."""
    model = copy.deepcopy(model)
    calls: dict[nn.Module, int] = {}
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(m, calls.get(m, 0) + 1)) for m in leaves]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    split: list[_OnePerCall] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if calls.get(child, 0) > 1:
                split.append(_OnePerCall(child, calls[child]))
                setattr(parent, name, split[-1])
    if split:

        def restart(module, args):
            for s in split:
                s.calls = 0

        model.register_forward_pre_hook(restart)
    return model


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
    method,
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
    method,
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
