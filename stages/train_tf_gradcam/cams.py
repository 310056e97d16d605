"""The Grad-CAM family for Keras fold ensembles, through tf-keras-vis.

Every function takes the fold models (each returns logits), images (n, H, W, C) float32 and the target classes, and
returns (n, H, W, C) maps of the ensemble's mean logit. CAMs are computed at the layer's resolution (tf-keras-vis,
``expand_cam=False``), summed over the fold models before the ReLU (the ensemble's logit is their mean) and
up-sampled to the exact image size with bilinear interpolation on pixel centres (``tf.image.resize``, as torch's
``align_corners=False``): no pixel shift, whatever the ratio of sizes.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

# tf-keras-vis passes the inputs as a list to single-input functional models, which Keras 3 accepts with a warning
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match", category=UserWarning)


def _score(targets: np.ndarray):
    from tf_keras_vis.utils.scores import CategoricalScore

    return CategoricalScore([int(t) for t in targets])


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w) -> (n, H, W), bilinear on pixel centres (half-pixel offsets)."""
    return tf.image.resize(
        tf.convert_to_tensor(cam[..., None], tf.float32), size, method="bilinear", antialias=False
    ).numpy()[..., 0]


def cam(models, x: np.ndarray, targets: np.ndarray, layer: str, plus_plus: bool = False) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) or Grad-CAM++ (Chattopadhay et al. 2018) at ``layer``: (n, H, W, 1)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    total = None
    for model in models:
        tool = (GradcamPlusPlus if plus_plus else Gradcam)(model, clone=True)
        kwargs = {"activation_modifier": None} if not plus_plus else {}
        raw = tool(
            _score(targets),
            x,
            penultimate_layer=layer,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
            **kwargs,
        )
        raw = np.asarray(raw, dtype=np.float32) / len(models)
        total = raw if total is None else total + raw
    return np.maximum(upsample(total, x.shape[1:3]), 0)[..., None]


def guided_backprop(models, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015): the input gradient of the target logit with every ReLU's
    gradient passed only where both its forward input and the incoming gradient are positive (tf-keras-vis's
    GuidedBackpropagation modifier, a ``tf.custom_gradient``, which works in eager mode). Signed, (n, H, W, C)."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation

    total = None
    for model in models:
        grads = Saliency(model, model_modifier=GuidedBackpropagation(), clone=True)(
            _score(targets), x, keepdims=True, gradient_modifier=None, normalize_map=False
        )
        grads = np.asarray(grads, dtype=np.float32) / len(models)
        total = grads if total is None else total + grads
    return total


def guided_grad_cam(models, x: np.ndarray, targets: np.ndarray, layer: str) -> np.ndarray:
    """Guided backpropagation times the up-sampled Grad-CAM, element by element."""
    return guided_backprop(models, x, targets) * cam(models, x, targets, layer)


DESCRIPTIONS = {
    "grad_cam": (
        "Grad-CAM (Selvaraju et al. 2017), Keras/tf-keras-vis: the activations of the last convolution "
        "weighted by their spatially pooled gradients for the true class, summed over the fold models, "
        "ReLU, up-sampled to the exact image size. Coarse by construction."
    ),
    "grad_cam_plus_plus": (
        "Grad-CAM++ (Chattopadhay et al. 2018), tf-keras-vis: Grad-CAM with pixel-wise weights of "
        "the positive gradients, which separates several instances of a class better."
    ),
    "guided_backprop": (
        "Guided backpropagation (Springenberg et al. 2015): the input gradient with every ReLU's "
        "gradient kept only where both its input and the incoming gradient are positive; sharp, but "
        "known to depend little on the upper layers (Adebayo et al. 2018)."
    ),
    "guided_grad_cam": (
        "Guided Grad-CAM: guided backpropagation times the up-sampled Grad-CAM, computed for real (the "
        "TensorFlow prior art's guided part was a no-op in eager mode)."
    ),
}
SIGNED = {"grad_cam": False, "grad_cam_plus_plus": False, "guided_backprop": True, "guided_grad_cam": True}


def attribute(method: str, models, x: np.ndarray, targets: np.ndarray, layer: str) -> np.ndarray:
    if method == "grad_cam":
        return cam(models, x, targets, layer)
    if method == "grad_cam_plus_plus":
        return cam(models, x, targets, layer, plus_plus=True)
    if method == "guided_backprop":
        return guided_backprop(models, x, targets)
    return guided_grad_cam(models, x, targets, layer)
