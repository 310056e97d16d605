"""train_3d_mri: IDH mutation status from 4-channel brain MRI (FLAIR, T1, T1c, T2) with MONAI's 3-D EfficientNet,
partly frozen for small GPUs, and 3-D Grad-CAM scored against the tumour mask (see __main__ and params)."""
