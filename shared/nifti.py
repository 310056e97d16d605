"""Maps on a model's volume grid back into each patient's own space, as NIfTI that overlays the scan in ITK-SNAP or
3D Slicer: resampled by world coordinates (TorchIO's ``Resample`` onto a reference grid, linear), from the
model-grid affine to the native shape and affine that train_3d_mri records per exam (``grids.npz`` in its dataset
layout, ``shared.dataset``), so no raw scan needs to be read again.
"""

from __future__ import annotations

import numpy as np


def to_native(volume: np.ndarray, model_affine: np.ndarray, native_shape, native_affine: np.ndarray, signed: bool):
    """A (D, H, W) map on the model's grid -> a ``nibabel.Nifti1Image`` float32 on the native grid (``native_shape``
    and ``native_affine``, millimetres); an unsigned map is clipped at 0 (linear interpolation keeps it
    non-negative up to rounding)."""
    import nibabel as nib
    import torch
    import torchio as tio

    image = tio.ScalarImage(tensor=torch.from_numpy(np.asarray(volume, np.float32)[None].copy()), affine=model_affine)
    target = tio.ScalarImage(tensor=torch.zeros((1, *[int(s) for s in native_shape])), affine=native_affine)
    data = tio.Resample(target, image_interpolation="linear")(image).data[0].numpy()
    out = nib.Nifti1Image((data if signed else np.clip(data, 0, None)).astype(np.float32), native_affine)
    out.header.set_xyzt_units("mm")
    return out
