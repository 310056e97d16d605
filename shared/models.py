"""Torch model builders shared by the stages that train models and the stages that explain them.

A trained classifier is saved as ``model.json`` (architecture and its arguments, classes, input
standardisation, member checkpoints) plus one ``state_dict`` file per member; ``load_classifier`` rebuilds it
with ``torch.load(weights_only=True)``: nothing that executes code on load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError, first_line
from .logs import get_logger

log = get_logger(__name__)

# torchvision builders and the file names of their ImageNet weights in the torch hub cache.
IMAGE_ARCHS = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights"),
}
#: hidden widths of the dense network presets; "gtex" is the GTEx prior art's 19291 -> 7000 -> 2916 -> 540 -> classes
DENSE_PRESETS = {"gtex": [7000, 2916, 540], "small": [512, 128]}


class Standardize(nn.Module):
    """(x - mean) / std per channel (images, volumes) or per feature (vectors), as the first layer, so that
    attributions are with respect to the model's input as stored, not its standardised form.

    spatial_dims: 0 for vectors (n, features), 2 for images (n, C, H, W), 3 for volumes (n, C, D, H, W)."""

    def __init__(self, mean: list[float], std: list[float], spatial_dims: int = 2):
        super().__init__()
        shape = (1, -1, *([1] * spatial_dims))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

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


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def build_image_classifier(
    arch: str,
    in_channels: int,
    n_classes: int,
    mean: list[float],
    std: list[float],
    pretrained: bool = False,
    stem: str = "imagenet",
    norm: str = "batch",
) -> nn.Module:
    """A torchvision classifier (ResNet-18, EfficientNet-B0) for (N, in_channels, H, W) images in [0, 1], any size.

    With ``pretrained`` the ImageNet weights come from the local torch cache (never downloaded); for an input with
    other than 3 channels the first convolution's RGB filters are averaged into each channel.

    For small images trained from scratch: ``stem="small"`` makes the first convolution 3x3 with stride 2 and drops
    ResNet's max-pool, so that a 32x32 gene image is not reduced to 8x8 before the first block; EfficientNet's
    stem becomes 3x3 with stride 1 (its stages already reduce by 16: a 16x16 image then reaches 1x1 at the sixth
    stage rather than the fourth). ``norm="group"`` replaces EfficientNet-B0's BatchNorm by GroupNorm (8
    groups), whose statistics do not depend on the batch: with a few hundred samples, a batch of 64 and a
    one-cycle schedule, BatchNorm's running statistics lag the fast-changing weights and the network predicts at
    chance in evaluation mode while it is learning in training mode. Trained from scratch, EfficientNet's residual
    blocks start as identities (the last normalisation's scale at 0), as ResNets are commonly initialised.
    """
    import torchvision.models as tvm

    if arch not in IMAGE_ARCHS:
        raise UserError(f"unknown image architecture '{arch}' (known: {', '.join(IMAGE_ARCHS)})")
    if stem not in ("imagenet", "small"):
        raise UserError(f"unknown stem '{stem}' (imagenet or small)")
    if norm not in ("batch", "group"):
        raise UserError(f"unknown norm '{norm}' (batch or group)")
    if norm == "group" and (pretrained or arch != "efficientnet_b0"):
        raise UserError(
            "train_torch.norm: group is for EfficientNet-B0 trained from scratch (ImageNet weights come "
            "with BatchNorm); use norm: batch or auto"
        )
    kwargs = {"norm_layer": _group_norm} if norm == "group" else {}
    net = getattr(tvm, IMAGE_ARCHS[arch][0])(weights=None, **kwargs)
    if pretrained:
        net.load_state_dict(torch.load(cached_weights_file(arch), map_location="cpu", weights_only=True))
    if arch == "resnet18":
        net.conv1 = _adapt_conv(net.conv1, in_channels, pretrained, small=stem == "small")
        if stem == "small":
            net.maxpool = nn.Identity()
        net.fc = nn.Linear(net.fc.in_features, n_classes)
    else:
        first = net.features[0][0]
        if stem == "small":
            net.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, 1, 1, bias=False)
        else:
            net.features[0][0] = _adapt_conv(first, in_channels, pretrained, small=False)
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, n_classes)
        if not pretrained:
            for block in net.modules():
                if isinstance(block, tvm.efficientnet.MBConv) and block.use_res_connect:
                    last = [m for m in block.block.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))][-1]
                    nn.init.zeros_(last.weight)
    return _no_inplace_relu(nn.Sequential(Standardize(mean, std), net))


def _adapt_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool, small: bool) -> nn.Conv2d:
    if small:
        return nn.Conv2d(in_channels, conv.out_channels, 3, 2, 1, bias=False)
    if in_channels == conv.in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(conv.weight.mean(1, keepdim=True).repeat(1, in_channels, 1, 1))
    return new


class DenseNet(nn.Module):
    """The dense network for expression vectors: Linear -> ReLU -> Dropout per hidden layer, then the classes.

    The GTEx prior art left the activations out (a linear model whose saliency is the same for every sample);
    here every hidden layer has its ReLU.
    """

    def __init__(self, n_genes: int, widths: list[int], n_classes: int, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        prev = n_genes
        for width in widths:
            layers += [nn.Linear(prev, width), nn.ReLU(), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """The TCGA prior art's CNN for gene-grid images: three 3x3 convolutions (32, 64, 64) each followed by
    max-pooling, then dense 1024 -> 512 -> 64 -> classes (with ReLUs)."""

    def __init__(self, in_channels: int, n_classes: int, image_hw: tuple[int, int], dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        h, w = (max(1, s // 8) for s in image_hw)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * h * w, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, 512),
            nn.ReLU(),
            nn.Linear(512, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(
    spec: dict[str, Any], mean: list[float] | None = None, std: list[float] | None = None, pretrained: bool = False
) -> nn.Module:
    """Any classifier of the project from its spec (what ``model.json`` records).

    spec: ``arch`` (resnet18, efficientnet_b0, small_cnn, dense; efficientnet-b0 ... b7 for volumes, see
    ``shared.models3d``), ``input_shape`` ([C, H, W], [C, D, H, W] or [n_genes]),
    ``n_classes`` and the arch's options (``stem``, ``norm``; ``widths``, ``dropout``).
    """
    arch, shape, n_classes = spec["arch"], list(spec["input_shape"]), spec["n_classes"]
    if arch.startswith("efficientnet-b"):  # MONAI's 3-D EfficientNet (train_3d_mri); volumes come normalised
        from .models3d import build

        return _no_inplace_relu(build(spec))
    spatial_dims = 0 if arch == "dense" else len(shape) - 1
    mean = mean if mean is not None else [0.0] * shape[0]
    std = std if std is not None else [1.0] * shape[0]
    if arch in IMAGE_ARCHS:
        return build_image_classifier(
            arch, shape[0], n_classes, mean, std, pretrained, spec.get("stem", "imagenet"), spec.get("norm", "batch")
        )
    if arch == "small_cnn":
        net = SmallCNN(shape[0], n_classes, (shape[1], shape[2]), spec.get("dropout", 0.5))
    elif arch == "dense":
        net = DenseNet(shape[0], list(spec["widths"]), n_classes, spec.get("dropout", 0.5))
    else:
        known = ", ".join([*IMAGE_ARCHS, "small_cnn", "dense", "efficientnet-b0 ... b7"])
        raise UserError(f"unknown architecture '{arch}' (known: {known})")
    return nn.Sequential(Standardize(mean, std, spatial_dims), net)


def check_input_size(spec: dict[str, Any], section: str) -> None:
    """One zero sample through the network built from ``spec``: a network whose layers shrink the input below one
    pixel (small_cnn's three poolings on a 4 x 4 image) stops here, before any training, naming the keys to change."""
    net = build_model(spec).eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *spec["input_shape"]))
    except RuntimeError as exc:
        shape = " x ".join(map(str, spec["input_shape"]))
        raise UserError(
            f"{section}.models: {spec['arch']} cannot take {shape} inputs ({first_line(exc)[:120]}); make the images "
            f"larger (preprocess.height, preprocess.width) or leave {spec['arch']} out of {section}.models"
        ) from None


def save_classifier(folder: Path, spec: dict[str, Any], members: list[nn.Module]) -> None:
    """Write ``model.json`` and ``member<k>.pt`` state_dicts."""
    names = []
    for k, member in enumerate(members):
        name = f"member{k}.pt"
        torch.save(member.state_dict(), folder / name)
        names.append(name)
    (folder / "model.json").write_text(json.dumps({**spec, "framework": "torch", "members": names}, indent=2) + "\n")


def load_classifier(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the ensemble saved by ``save_classifier`` (eval mode, on ``device``)."""
    folder = Path(folder)
    try:
        spec = json.loads((folder / "model.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: no model.json; run the training stage first") from None
    members = []
    for name in spec["members"]:
        # the standardisation buffers are part of each member's state_dict (fitted on that member's training fold)
        member = build_model(spec)
        member.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
        members.append(member)
    return inference_layout(Ensemble(members).to(device).eval(), spec, device), spec


def inference_layout(model: nn.Module, spec: dict[str, Any], device: torch.device | str) -> nn.Module:
    """``model`` with its weights in the memory layout its convolutions run fastest in for inference and
    attribution: channels-last for image models on a CPU (oneDNN's convolutions of the small gene images run about
    1.7x faster forward and 1.1-1.3x with input gradients; ``python -m bench.explain`` measures it); unchanged for
    vectors, volumes (channels-last-3d measured no faster on a CPU) and GPUs (not measured here). Any input layout
    works with it. Outputs agree with the contiguous layout's to float rounding; gradients too, except where a
    ReLU's input lies within that rounding of zero and its gradient flips (on a random ResNet-18, a few samples in a
    hundred; changing the thread count does the same)."""
    if len(spec["input_shape"]) == 3 and torch.device(device).type == "cpu":
        return model.to(memory_format=torch.channels_last)
    return model
