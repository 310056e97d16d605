"""train_tf_gradcam: the TCGA gene-grid CNN of the prior art, in TensorFlow/Keras 3, with its Grad-CAM family.

Trains Keras models by name (``networks.ARCHS``: the reference CNN, a small residual net) on preprocess's images
with the shared protocol (the same folds and held-out test as every trainer), writes the classifier result layout,
and explains the fold ensemble in the stage itself (torch's explain stage does not load TensorFlow models):
Grad-CAM and Grad-CAM++ (tf-keras-vis), guided backpropagation (gradients through ReLUs gated on both the forward
input and the backward signal) and Guided Grad-CAM, written in explain's layout so report treats them alike.

Outputs: ``STAGE.outputs`` in params.py.
"""
