"""The attribution methods, each declared once: a class per method whose name, options section, signedness, input
kinds and description are all the pipeline knows of it. The config's method list (``explain.methods``), its option
sections (``explain.<method>``), the warning for options set for a method not run, the description in metrics.json
and the report, and the docs' method table (``make docs``) are derived from ``METHODS``; adding a method is one
class here (docs/adding-a-method.md).

A class's docstring is its description as users read it (the report, the docs); how it is computed is said in
comments. Its ``Options`` (a config section) holds the settings users can change, with their defaults.

This module must import without torch (every stage validates the whole config, and some images have no torch):
torch and Captum are imported inside the methods, when they run.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from shared.config import Section
from shared.errors import UserError

if TYPE_CHECKING:  # annotations only: this module imports without torch
    from .inputs import ModelInputs
    from .params import Explain

#: every method, by config name, in the order the docs and the config's choices list them
METHODS: dict[str, type[Method]] = {}


class Method:
    """Base of the methods. ``attribute(inputs, target)`` returns attributions of the inputs' shape (vectors (n,
    features), images (n, C, H, W) or volumes (n, C, D, H, W)) for the ``target`` class of each row."""

    #: the name in ``explain.methods``; a class without one is not a method users can choose
    name: ClassVar[str] = ""
    #: the settings users can change (the config section ``explain.<options_key>``), or None
    Options: ClassVar[type[Section] | None] = None
    #: the config key of the options: the method's name, or another method's whose options it shares
    options_key: ClassVar[str | None] = None
    #: signed attributions rank a class's positive evidence; unsigned ones rank sensitivity
    signed: ClassVar[bool] = True
    #: the result depends on random draws: its stability across draws is measured
    stochastic: ClassVar[bool] = False
    #: input kinds the method applies to
    kinds: ClassVar[tuple[str, ...]] = ("vector", "image", "volume")
    #: it compares with training inputs (``background``): set for a method whose options have a ``background`` count
    needs_background: ClassVar[bool] = False
    #: the docstring, as one paragraph (set for every subclass)
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.description = " ".join(inspect.cleandoc(cls.__doc__ or "").split())
        if cls.Options is not None and cls.options_key is None:
            cls.options_key = cls.name
        cls.needs_background = cls.Options is not None and "background" in cls.Options.model_fields
        if cls.name:
            METHODS[cls.name] = cls

    def __init__(self, model, options: Any = None, background=None):
        self.model = model
        self.options = options if options is not None or self.Options is None else self.Options()
        self.background = background

    @classmethod
    def not_applicable(cls, kind: str, arch: str | None) -> str | None:
        """Why the method cannot explain a model of this input kind and architecture (None: it can)."""
        if kind not in cls.kinds:
            return f"{cls.name} applies to {' and '.join(cls.kinds)} inputs"
        return None

    def attribute(self, inputs, target):
        raise NotImplementedError


def input_range(inputs) -> float:
    """The mean over the batch of each input's range (max - min): the scale of the noise methods add."""
    flat = inputs.detach().reshape(len(inputs), -1)
    return float((flat.max(1).values - flat.min(1).values).mean())


def reference_input(model, inputs, kind: str, option: str):
    """The reference input of path and difference methods: zeros, the training mean (per channel or gene, from the
    model's first layer), or (images and volumes) the input blurred."""
    import torch

    from .attributions import training_mean

    if kind == "zeros":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return training_mean(model, inputs)
    if inputs.ndim < 4:
        raise UserError(f"{option}: blurred applies to images and volumes, not to vectors; use zeros or mean")
    from scipy.ndimage import gaussian_filter

    sigma = [0, 0, *[max(1.0, s / 8) for s in inputs.shape[2:]]]
    return torch.from_numpy(gaussian_filter(inputs.detach().cpu().numpy(), sigma)).to(inputs.device)


class Saliency(Method):
    """Saliency (Simonyan et al. 2014): the absolute gradient of the true class's logit with respect to each input
    value, averaged over the held-out test samples of each class (for images, returned to genes through the
    pixel-to-gene map of training). It shows where the output is sensitive, including to genes whose absence is
    evidence; it is not a measure of effect size."""

    name = "saliency"
    signed = False

    def attribute(self, inputs, target):
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(self.model).attribute(inputs, target=target, abs=True)


class Gradient(Method):
    """Signed gradient of the true class's logit: positive where more of a gene raises the class's score. Genes
    ranked by it are the class's positive evidence (absolute saliency ranks negative evidence, such as other
    classes' markers, just as high)."""

    name = "gradient"

    def attribute(self, inputs, target):
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(self.model).attribute(inputs, target=target, abs=False)


class InputXGradient(Method):
    """Gradient times input: each gene's first-order contribution to the true class's logit in each held-out test
    sample, averaged per class; genes ranked by it."""

    name = "input_x_gradient"

    def attribute(self, inputs, target):
        from captum.attr import InputXGradient as CaptumIxG

        return CaptumIxG(self.model).attribute(inputs, target=target)


class SmoothGrad(Method):
    """SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over copies of each input with Gaussian noise
    (sd a fixed fraction of the input's range), which removes the gradient's high-frequency noise; genes ranked by
    it."""

    class Options(Section):
        #: noise sd as a fraction of each input's range; Smilkov et al. (2017) found 10-20% best
        noise_level: float = Field(0.15, gt=0, le=1)
        #: noisy copies averaged (the paper: 50; 25 halves the cost with little change)
        samples: int = Field(25, ge=1)

    name = "smoothgrad"
    stochastic = True

    def attribute(self, inputs, target):
        # captum.attr.NoiseTunnel over the signed gradient; noise sd = noise_level x the batch's mean range
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        o = self.options
        return NoiseTunnel(CaptumSaliency(self.model)).attribute(
            inputs,
            target=target,
            abs=False,
            nt_type="smoothgrad",
            nt_samples=o.samples,
            nt_samples_batch_size=max(1, min(o.samples, 256 // max(1, len(inputs)))),
            stdevs=o.noise_level * input_range(inputs),
        )


class IntegratedGradients(Method):
    """Integrated Gradients (Sundararajan et al. 2017): the gradient integrated along the straight path from a
    baseline (zeros, the training mean, or a blurred copy of the input) to the input, times their difference; a
    sample's attributions add up to its logit minus the baseline's."""

    class Options(Section):
        #: Riemann steps along the path (Sundararajan et al. 2017: 20 to 300; 50 keeps completeness within a few %)
        steps: int = Field(50, ge=2)
        #: zeros | mean (the training mean, per channel or gene) | blurred (Gaussian-blurred input; images, volumes)
        baseline: Literal["zeros", "mean", "blurred"] = "zeros"

    name = "integrated_gradients"

    def baseline(self, inputs):
        return reference_input(self.model, inputs, self.options.baseline, "explain.integrated_gradients.baseline")

    def attribute(self, inputs, target):
        from captum.attr import IntegratedGradients as CaptumIG

        return CaptumIG(self.model).attribute(
            inputs, baselines=self.baseline(inputs), target=target, n_steps=self.options.steps, internal_batch_size=256
        )


class DeepLift(Method):
    """DeepLIFT (Shrikumar et al. 2017): each input's contribution to the difference between the true class's logit
    and a reference input's (zeros or the training mean), propagated back through the network with the rescale rule
    instead of the gradient; a sample's attributions add up to that difference (exactly through ReLU and linear
    layers, approximately through max-pooling). For networks built of ReLU, pooling, convolution, normalisation and
    linear layers (dense, small_cnn, resnet18); not for EfficientNet, whose SiLU and squeeze-excitation products
    its rules do not cover."""

    class Options(Section):
        #: the reference input: zeros | mean (the training mean, per channel or gene)
        baseline: Literal["zeros", "mean"] = "zeros"

    name = "deeplift"
    kinds = ("vector", "image")
    #: architectures whose every nonlinearity has a DeepLIFT rule in Captum
    architectures: ClassVar[tuple[str, ...]] = ("dense", "small_cnn", "resnet18")
    _split = None  # the model with one module per call, made on the first batch

    @classmethod
    def not_applicable(cls, kind, arch):
        if arch is not None and arch not in cls.architectures:
            return (
                f"deeplift: {arch} has nonlinearities Captum's DeepLIFT rules do not cover (it explains "
                f"{', '.join(cls.architectures)})"
            )
        return super().not_applicable(kind, arch)

    def attribute(self, inputs, target):
        # captum.attr.DeepLift on a copy of the model whose reused activation modules are split into one module per
        # call (torchvision's ResNet blocks call one ReLU twice; Captum's hooks need each used once: captum #1082)
        from captum.attr import DeepLift as CaptumDeepLift

        from .attributions import one_module_per_call

        if self._split is None:
            self._split = one_module_per_call(self.model, inputs)
        base = reference_input(self.model, inputs, self.options.baseline, "explain.deeplift.baseline")
        return CaptumDeepLift(self._split).attribute(inputs, baselines=base, target=target)


class GradientShap(Method):
    """GradientSHAP (Lundberg & Lee 2017): expected gradients, the gradient at random points between the input and
    training samples drawn as references, times their difference, averaged; a sample's attributions add up, in
    expectation, to its logit minus the mean logit of the references. It approximates SHAP values with the
    training split as the background distribution."""

    class Options(Section):
        #: training samples drawn (seeded, never test samples) as the reference distribution
        background: int = Field(64, ge=1)
        #: random (reference, point on the path) draws per input
        samples: int = Field(25, ge=1)
        #: Gaussian noise sd added to each draw, as a fraction of the input's range (0: none)
        noise_level: float = Field(0.0, ge=0, le=1)

    name = "gradient_shap"
    stochastic = True

    def attribute(self, inputs, target):
        from captum.attr import GradientShap as CaptumGradientShap

        if self.background is None:
            raise ValueError("gradient_shap needs its training background")
        o = self.options
        return CaptumGradientShap(self.model).attribute(
            inputs,
            baselines=self.background.to(inputs.device, inputs.dtype),
            target=target,
            n_samples=o.samples,
            stdevs=o.noise_level * input_range(inputs),
        )


class GradCAM(Method):
    """Grad-CAM (Selvaraju et al. 2017): the activations of a late convolutional layer weighted by their spatially
    pooled gradients for the true class, up-sampled to the input. Coarse (the layer's resolution) and
    class-discriminative; on small images the last layer with spatial extent can be a few pixels wide, so its maps
    are blurry by construction."""

    class Options(Section):
        #: auto: the last layer whose output keeps spatial extent; or a module name of a fold model (e.g. layer3)
        layer: str = "auto"

    name = "grad_cam"
    signed = False
    kinds = ("image", "volume")

    def __init__(self, model, options=None, background=None):
        super().__init__(model, options, background)
        self.layer_name: str | None = None
        self._layers: tuple[tuple, list] | None = None

    def layers(self, inputs) -> list:
        """The target layer of each fold model; found once per input shape (a hooked forward pass)."""
        from .attributions import members, spatial_layers

        if self._layers is not None and self._layers[0] == tuple(inputs.shape[1:]):
            return self._layers[1]
        out = []
        for member in members(self.model):
            candidates = spatial_layers(member, inputs)
            wanted = self.options.layer
            name = candidates[-1] if wanted == "auto" and candidates else wanted
            modules = dict(member.named_modules())
            name = name if name in modules else f"1.{name}" if f"1.{name}" in modules else None
            if name is None or (wanted == "auto" and not candidates):
                shown = ", ".join(c.removeprefix("1.") for c in candidates[-8:]) or "none"
                raise UserError(
                    f"explain.grad_cam.layer: no layer '{wanted}' with spatial extent in the model "
                    f"(the last candidates: {shown})"
                )
            self.layer_name = name.removeprefix("1.")
            out.append(modules[name])
        self._layers = (tuple(inputs.shape[1:]), out)
        return out

    def cam(self, inputs, target):
        # shared.cam: the fold models' layers through the ensemble's logit, summed, ReLU, then up-sampled
        from shared.cam import grad_cam

        return grad_cam(self.model, self.layers(inputs), inputs, target)

    def attribute(self, inputs, target):
        return self.cam(inputs, target).expand_as(inputs).contiguous()


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation (gradients through ReLUs kept only where
    positive) times the up-sampled Grad-CAM map: Grad-CAM's class-discriminative regions at the input's resolution.
    Computed for real (the TensorFlow prior art's "guided" part did nothing in eager mode)."""

    name = "guided_grad_cam"
    options_key = "grad_cam"
    signed = True

    def attribute(self, inputs, target):
        from captum.attr import GuidedBackprop

        guided = GuidedBackprop(self.model).attribute(inputs, target=target)
        return guided * self.cam(inputs, target)


class Occlusion(Method):
    """Occlusion (Zeiler & Fergus 2014): the fall of the true class's logit when a window of inputs (pixels, or
    consecutive genes for vectors) is set to zero, slid across the input; model-agnostic and slow, a check on the
    gradient methods."""

    class Options(Section):
        #: window side in pixels (images, volumes) or genes (vectors)
        window: int = Field(3, ge=1)
        #: the step between windows
        stride: int = Field(2, ge=1)

    name = "occlusion"

    def attribute(self, inputs, target):
        # captum.attr.Occlusion: windows of ``window`` a side every ``stride``, all channels at once
        from captum.attr import Occlusion as CaptumOcclusion

        o = self.options
        spatial = inputs.ndim - 2
        if spatial <= 0:
            window, strides = (min(o.window, inputs.shape[1]),), (o.stride,)
        else:
            window = (inputs.shape[1], *[min(o.window, s) for s in inputs.shape[2:]])
            strides = (inputs.shape[1], *[o.stride] * spatial)
        return CaptumOcclusion(self.model).attribute(
            inputs,
            sliding_window_shapes=window,
            strides=strides,
            target=target,
            baselines=0.0,
            perturbations_per_eval=16,
        )


def option_sections() -> dict[str, type[Section]]:
    """{config key: options section} of the methods, each key once (Guided Grad-CAM reads Grad-CAM's)."""
    return {m.options_key: m.Options for m in METHODS.values() if m.Options is not None and m.options_key == m.name}


def owners(key: str) -> list[str]:
    """The methods that read the options section ``key``."""
    return [m.name for m in METHODS.values() if m.options_key == key]


def make_method(method_name: str, net, settings: Explain, data: ModelInputs, device, seed: int):
    """The method ``method_name`` of the network ``net`` (the model, a fold model or a randomised copy) with its
    configured options and, for methods that compare with training samples, their seeded draw (the same draw for
    every network)."""
    cls, options = METHODS[method_name], settings.options(method_name)
    background = data.background(options.background, seed, device) if cls.needs_background else None
    return cls(net, options, background)
