"""Torch model builders shared by the stages that train models and the stages that explain them.

A trained classifier is saved as ``model.json`` (architecture and its arguments, classes, input
standardisation, member checkpoints) plus one ``state_dict`` file per member; ``load_classifier`` rebuilds it
with ``torch.load(weights_only=True)``: nothing that executes code on load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .logs import get_logger

log = get_logger(__name__)

# torchvision builders and the file names of their ImageNet weights in the torch hub cache.
IMAGE_ARCHS = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
}


class Standardize(nn.Module):
    """(x - mean) / std per channel, as the first layer, so attributions are w.r.t. the [0, 1] image."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Ensemble(nn.Module):
    """The mean of its members' logits: one model to predict with and to explain."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def _no_inplace_relu(model: nn.Module) -> nn.Module:
    # In-place ReLUs break the backward hooks of attribution methods (Captum's guided backprop, Grad-CAM).
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def cached_weights_file(arch: str) -> Path | None:
    """The ImageNet checkpoint of ``arch`` in the local torch hub cache, if the user has it there."""
    import torchvision.models as tvm

    weights = getattr(tvm, IMAGE_ARCHS[arch][1]).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return path if path.is_file() else None


def build_image_classifier(arch: str, in_channels: int, n_classes: int, mean: list[float], std: list[float],
                           pretrained: bool = False, stem: str = "imagenet") -> nn.Module:
    """A torchvision classifier for (N, in_channels, H, W) float images in [0, 1], any size.

    With ``pretrained`` the ImageNet weights come from the local torch cache (never downloaded); for a
    one-channel input the first convolution's RGB filters are summed into one. ``stem="small"`` replaces the
    7x7/2 convolution and max-pool by a 3x3/1 convolution (as for CIFAR-sized inputs), so that a 32x32 gene
    image is not reduced to 8x8 before the first residual block.
    """
    import torchvision.models as tvm

    if arch not in IMAGE_ARCHS:
        raise UserError(f"unknown image architecture '{arch}' (known: {', '.join(IMAGE_ARCHS)})")
    net = getattr(tvm, IMAGE_ARCHS[arch][0])(weights=None)
    if pretrained:
        state = torch.load(cached_weights_file(arch), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    if stem not in ("imagenet", "small"):
        raise UserError(f"unknown stem '{stem}' (imagenet or small)")
    conv1 = net.conv1
    if stem == "small":
        net.conv1 = nn.Conv2d(in_channels, conv1.out_channels, 3, 2, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != conv1.in_channels:
        new = nn.Conv2d(in_channels, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, bias=False)
        if pretrained:
            with torch.no_grad():
                new.weight.copy_(conv1.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
        net.conv1 = new
    net.fc = nn.Linear(net.fc.in_features, n_classes)
    return _no_inplace_relu(nn.Sequential(Standardize(mean, std), net))


def save_classifier(folder: Path, spec: dict[str, Any], members: list[nn.Module]) -> None:
    """Write ``model.json`` and ``member<k>.pt`` state_dicts."""
    names = []
    for k, member in enumerate(members):
        name = f"member{k}.pt"
        torch.save(member.state_dict(), folder / name)
        names.append(name)
    (folder / "model.json").write_text(json.dumps({**spec, "members": names}, indent=2) + "\n")


def load_classifier(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the ensemble saved by ``save_classifier`` (eval mode, on ``device``)."""
    folder = Path(folder)
    try:
        spec = json.loads((folder / "model.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: no model.json; run the training stage first") from None
    members = []
    for name in spec["members"]:
        channels = spec["in_channels"]
        # the standardisation buffers are part of each member's state_dict (fitted on that member's training fold)
        member = build_image_classifier(spec["arch"], channels, spec["n_classes"], [0.0] * channels, [1.0] * channels,
                                        stem=spec.get("stem", "imagenet"))
        member.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
        members.append(member)
    model = Ensemble(members).to(device).eval()
    return model, spec
