"""Keras 3 networks by name. Each returns logits (softmax is applied when predicting), and every ReLU is a layer's
``activation`` (a Conv2D's, a Dense's or an ``Activation`` layer's), which is where guided backpropagation gates the
gradients."""

from __future__ import annotations

import keras
from keras import layers

from shared.errors import UserError


def reference_cnn(shape: tuple[int, int, int], n_classes: int, dropout: float) -> keras.Model:
    """The prior art's CNN: three 3x3 convolutions (32, 64, 64), each followed by 2x2 max-pooling; dense 1024 ->
    512 -> 64 with dropout; a linear output."""
    if min(shape[:2]) < 8:
        raise UserError(
            f"train_tf_gradcam.models: reference_cnn pools three times by 2 and needs images of at least "
            f"8 x 8 pixels (these are {shape[0]} x {shape[1]}); use larger preprocess.height/width"
        )
    x = inputs = keras.Input(shape, name="image")
    for i, width in enumerate((32, 64, 64), start=1):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate((1024, 512, 64), start=1):
        x = layers.Dense(width, activation="relu", name=f"dense{i}")(x)
        x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name="reference_cnn")


def small_resnet(shape: tuple[int, int, int], n_classes: int, dropout: float) -> keras.Model:
    """A stem convolution and three residual stages (16, 32, 64 channels; the last two stride 2), each two 3x3
    convolutions with batch normalisation and an identity (or 1x1) shortcut; global average pooling; linear output."""
    if min(shape[:2]) < 4:
        raise UserError(
            f"train_tf_gradcam.models: small_resnet halves the image twice and needs at least 4 x 4 "
            f"pixels (these are {shape[0]} x {shape[1]})"
        )
    x = inputs = keras.Input(shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        shortcut = x
        y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"block{i}_conv1")(x)
        y = layers.BatchNormalization(name=f"block{i}_bn1")(y)
        y = layers.Activation("relu", name=f"block{i}_relu1")(y)
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(y)
        y = layers.BatchNormalization(name=f"block{i}_bn2", gamma_initializer="zeros")(y)
        if stride != 1 or shortcut.shape[-1] != width:
            shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"block{i}_down")(shortcut)
            shortcut = layers.BatchNormalization(name=f"block{i}_down_bn")(shortcut)
        x = layers.Activation("relu", name=f"block{i}_out")(layers.Add(name=f"block{i}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name="small_resnet")


ARCHS = {"reference_cnn": reference_cnn, "small_resnet": small_resnet}


def build(arch: str, shape: tuple[int, int, int], n_classes: int, dropout: float) -> keras.Model:
    """``shape``: (height, width, channels), channels last as Keras reads images."""
    return ARCHS[arch](tuple(shape), n_classes, dropout)


def feature_maps(model: keras.Model) -> list[str]:
    """Names of the layers whose output is a feature map with spatial extent (4-D, > 1 pixel): convolutions and
    the activations and sums of convolutional blocks; pooling layers excluded. In the model's order."""
    return [
        layer.name
        for layer in model.layers
        if len(layer.output.shape) == 4
        and layer.output.shape[1] * layer.output.shape[2] > 1
        and not isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D, layers.InputLayer))
    ]


def target_layer(model: keras.Model, wanted: str) -> str:
    """The CAM layer: auto, the last feature map (reference_cnn: conv3; small_resnet: block3_out, the last residual
    block's output), or the named layer, which must be a convolutional feature map."""
    maps = feature_maps(model)
    if wanted == "auto":
        if not maps:
            raise UserError(
                "train_tf_gradcam.explain.layer: the model has no convolutional feature map with spatial extent"
            )
        return maps[-1]
    names = [layer.name for layer in model.layers]
    if wanted not in names:
        raise UserError(
            f"train_tf_gradcam.explain.layer: no layer '{wanted}' in {model.name} (its convolutional "
            f"layers: {', '.join(maps)})"
        )
    if wanted not in maps:
        raise UserError(
            f"train_tf_gradcam.explain.layer: '{wanted}' is not a convolutional feature map with spatial "
            f"extent in {model.name} (those are: {', '.join(maps)})"
        )
    return wanted
