"""Seeds for python, numpy, torch and TensorFlow (whichever are loaded)."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator a stage may use. Frameworks are seeded only if the stage imported them."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
        if deterministic:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
    if sys.modules.get("tensorflow") is not None:  # imported by this process (never by a torch stage)
        import tensorflow as tf

        tf.random.set_seed(seed)
