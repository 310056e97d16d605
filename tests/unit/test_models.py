"""The classifiers: a network that cannot take its input size stops before training with the keys to change."""

from __future__ import annotations

import pytest

from shared.errors import UserError
from shared.models import check_input_size


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18", "efficientnet_b0"])
def test_every_image_model_is_checked_against_its_input_size(arch):
    spec = {"arch": arch, "input_shape": [3, 4, 4], "n_classes": 3, "stem": "small", "dropout": 0.5}
    if arch != "small_cnn":  # global pooling: any size of at least one pixel
        check_input_size(spec, "train_torch")
        return
    with pytest.raises(UserError) as err:  # three 2x2 poolings shrink 4 x 4 below one pixel
        check_input_size(spec, "train_torch")
    message = str(err.value)
    assert "\n" not in message and message.startswith("train_torch.models: small_cnn cannot take 3 x 4 x 4 inputs")
    assert "preprocess.height, preprocess.width" in message
    check_input_size({**spec, "input_shape": [3, 8, 8]}, "train_torch")


@pytest.mark.parametrize("n, dropped", [(33, True), (34, False), (32, False), (1, False)])
def test_a_training_epoch_never_ends_on_a_batch_of_one(n, dropped):
    """Batch normalisation cannot train on one sample where ResNet-18's maps are 1 x 1 (a 12 x 12 image): a training
    loader leaves out an epoch's last batch when it would hold one sample; other batches and validation stay whole."""
    import numpy as np

    from shared.torch_training.sampling import EpochShuffle
    from stages.train_torch.data import make_loader

    x, y = np.zeros((n, 3), np.float32), np.zeros(n, np.int64)
    sizes = [len(b[1]) for b in make_loader(x, y, np.arange(n), 32, sampler=EpochShuffle(n, 0, 32))]
    assert sizes[-1] != 1 or n == 1
    assert sum(sizes) == n - int(dropped)
    assert sum(len(b[1]) for b in make_loader(x, y, np.arange(n), 32)) == n  # validation: every sample
