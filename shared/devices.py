"""Device choice: CUDA when present (``device: auto``), or what the config names."""

from __future__ import annotations

from .errors import UserError


def choose_device(requested: str = "auto"):
    """Return a ``torch.device``. ``auto`` picks CUDA when available, else CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device: '{requested}' requested but no CUDA device is available (use device: auto or cpu)")
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"device: '{requested}' is not a device torch knows ({exc})") from None


def describe_device(device) -> str:
    """A human string for manifests: 'cpu (2 threads)' or 'cuda:0 (NVIDIA H100 ...)'."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"
