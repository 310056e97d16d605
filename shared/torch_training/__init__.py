"""Torch training used by every torch trainer (train_torch, train_3d_mri): one fold's epochs with early stopping and
resumable checkpoints (fit), losses (focal, weighted cross-entropy), the epoch-seeded and class-balanced samplers
(sampling) and torchrun / DistributedDataParallel (distributed). Imports torch; the TensorFlow stage never reads it."""
