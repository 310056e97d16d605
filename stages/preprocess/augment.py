"""Class balance: extra training samples for small classes, made after the split from training samples only."""

from __future__ import annotations

import numpy as np


def augmentation_plan(train_labels: np.ndarray, min_samples: int) -> dict[int, int]:
    """How many samples to add per class (label index) to reach ``min_samples`` training samples."""
    classes, counts = np.unique(train_labels, return_counts=True)
    return {int(c): int(min_samples - n) for c, n in zip(classes, counts, strict=False) if n < min_samples}


def augment(values: np.ndarray, n_new: int, method: str, rng: np.random.Generator, noise_sd: float = 0.5):
    """Make ``n_new`` samples from ``values`` (the training samples of one class, scaled to [0, 1]).

    Returns ``(new_values, source_rows)``: (n_new, n_genes) in [0, 1] and, for each new sample, the row of
    ``values`` it was made from (the first parent for interpolation).
    gtex_noise: values[i] * |N(1, noise_sd)| per gene (the GTEx prior art); interpolate: values[i] + u (values[j] -
    values[i]) with u ~ U(0, 1) and j another sample of the same class.
    """
    src = rng.integers(0, len(values), size=n_new)
    if method == "gtex_noise":
        noise = np.abs(rng.normal(1.0, noise_sd, size=(n_new, values.shape[1])))
        new = values[src] * noise
    elif method == "interpolate":
        other = rng.integers(0, len(values), size=n_new)
        u = rng.random((n_new, 1))
        new = values[src] + u * (values[other] - values[src])
    else:
        raise ValueError(f"unknown augmentation {method!r}")
    return np.clip(new, 0.0, 1.0).astype(np.float32), src
