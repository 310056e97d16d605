"""The volume classifier: MONAI's 3-D EfficientNet (B0-B7), partly frozen for small GPUs, with optional gradient
checkpointing. train_3d_mri trains it; ``shared.models.build_model`` rebuilds it from ``model.json`` (arch
``efficientnet-b<k>``) for explain.

Freezing keeps the stem and all but the last ``trainable_blocks`` of the seven block stages fixed; the head (the
1x1 head convolution, its norm and the classifier) always trains. Frozen parameters take no gradient and keep no
optimiser state, and since nothing before the first trainable stage needs a gradient, autograd stores none of the
frozen layers' activations: that is where the memory goes. With pretrained weights the frozen BatchNorm layers also
keep their running statistics (evaluation mode while training); from a random initialisation they keep adapting
their statistics, which is all a random frozen layer can learn.
"""

from __future__ import annotations

import torch
from monai.networks.nets import EfficientNetBN
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import UserError
from .logs import get_logger

log = get_logger(__name__)
N_STAGES = 7


class EfficientNet3d(EfficientNetBN):
    """EfficientNetBN for 4-channel volumes; ``freeze`` and ``checkpointing`` set the low-memory options."""

    def __init__(self, name: str, in_channels: int = 4, n_classes: int = 2, norm: str = "batch"):
        # batch: BatchNorm with momentum 0.1 (PyTorch's default) instead of MONAI's TensorFlow-style 0.01, so the
        # running statistics keep up with a short run; group: GroupNorm (8 groups; every EfficientNet width is a
        # multiple of 8), which has no running statistics to lag and no dependence on the batch, for training from
        # scratch on small batches of volumes
        layer = ("batch", {"eps": 1e-3, "momentum": 0.1}) if norm == "batch" else ("group", {"num_groups": 8})
        super().__init__(
            name, pretrained=False, spatial_dims=3, in_channels=in_channels, num_classes=n_classes, norm=layer
        )
        # MONAI initialises the classifier uniformly in +-1/sqrt(n_classes): +-0.7 for two classes, which starts
        # the logits at +-10 and the loss near 10; a small normal start (as for a fine-tuned head) trains smoothly
        nn.init.normal_(self._fc.weight, std=0.01)
        nn.init.zeros_(self._fc.bias)
        self.trainable_stages = N_STAGES
        self.keep_frozen_statistics = False
        self.checkpointing = False

    def freeze(self, trainable_blocks: int | None, keep_statistics: bool) -> None:
        """Everything but the last ``trainable_blocks`` block stages and the head stops learning (None: nothing)."""
        self.trainable_stages = N_STAGES if trainable_blocks is None else trainable_blocks
        self.keep_frozen_statistics = keep_statistics
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        if self.trainable_stages >= N_STAGES:
            return []
        first = N_STAGES - self.trainable_stages
        return [self._conv_stem, self._bn0, *list(self._blocks)[:first]]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.keep_frozen_statistics:
            for module in self.frozen_modules():
                module.eval()
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # MONAI's forward, with checkpointed trainable stages
        x = self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(inputs))))
        first = N_STAGES - self.trainable_stages
        for i, stage in enumerate(self._blocks):
            if self.checkpointing and self.training and i >= first and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        x = self._swish(self._bn1(self._conv_head(self._conv_head_padding(x))))
        x = self._avg_pooling(x).flatten(start_dim=1)
        return self._fc(self._dropout(x))


def build(spec: dict) -> EfficientNet3d:
    net = EfficientNet3d(
        spec["arch"], in_channels=len(spec["channels"]), n_classes=len(spec["classes"]), norm=spec.get("norm", "batch")
    )
    net.freeze(spec.get("trainable_blocks"), spec.get("pretrained", False))
    return net


def load_pretrained(net: nn.Module, path: str) -> dict:
    """Copy the tensors of a local state_dict whose names and shapes match; returns what was loaded and skipped."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable torch state_dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state_dict (names -> tensors)")
    own = net.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not loaded:
        raise UserError(
            f"{path}: no tensor matches the {type(net).__name__} architecture by name and shape; is it "
            "a state_dict of the same EfficientNet variant?"
        )
    skipped = sorted(k for k in state if k not in loaded)
    net.load_state_dict(loaded, strict=False)
    log.info(
        "pretrained weights %s: %d tensors loaded, %d kept their initialisation (%s)",
        path,
        len(loaded),
        len(own) - len(loaded),
        ", ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else ""),
    )
    return {"loaded": len(loaded), "kept_initialisation": sorted(k for k in own if k not in loaded), "skipped": skipped}


def trainable_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
