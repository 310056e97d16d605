"""Config sections read by train_3d_mri: ``mri`` (the cohort) and ``train_3d_mri`` (model, training)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.config import InputDir, InputFile, Output, Section, StageSpec
from shared.evaluation.outputs import CLASSIFIER_OUTPUTS

EFFICIENTNETS = tuple(f"efficientnet-b{i}" for i in range(8))


class Mri(Section):
    #: the release's folder: ucsf-pdgm holds UCSF-PDGM-0004_nifti/ (and follow-ups UCSF-PDGM-0433_FU007d_nifti/)
    #: folders, brats BraTS2021_00000/ folders. One release per run
    root: InputDir
    #: the release's folder and file naming (one release per run)
    layout: Literal["ucsf-pdgm", "brats"]
    #: the metadata / label table (CSV): UCSF-PDGM-metadata_v*.csv (ID like UCSF-PDGM-004, UCSF-PDGM-0433_FU007d); for
    #: brats the same UCSF-PDGM table (its BraTS21 ID column names the case; rows with none are left out and counted)
    #: or a table with a BraTS21ID column (00000, 0 or BraTS2021_00000)
    metadata: InputFile
    #: the table's exam id column; auto: ID (ucsf-pdgm), or for brats BraTS21ID, else UCSF-PDGM's BraTS21 ID
    id_column: str = "auto"
    #: the IDH status column; its values are read as wildtype / mutant (wildtype, wild-type, IDH-wildtype; mutant,
    #: mutated (NOS), IDH1 p.R132H, IDH2 p.R172K, ...); empty, NA, unknown: the exam is left out. Any other value is
    #: an error (0/1, positive/negative are how MGMT columns are written), unless label_values declares it
    label_column: str = "IDH"
    #: a declared map of the label column's values to wildtype / mutant for a table that codes IDH otherwise, e.g.
    #: {"0": wildtype, "1": mutant}; it replaces the spellings above. null: only IDH spellings are read
    label_values: dict[str, Literal["wildtype", "mutant"]] | None = None
    #: baselines (default): one exam per patient, so held-out metrics count patients and no tumour is scored twice;
    #: all: UCSF-PDGM's six follow-up exams (the same tumour and IDH status, 1-175 days later) are used too, always
    #: on their baseline's side of every split. Left-out follow-ups are counted in cohort.csv and the report
    exams: Literal["baselines", "all"] = "baselines"
    #: after the sequence name in the file names: "" (UCSF-PDGM_0004_T1.nii.gz) or "_bias" (the release's
    #: bias-field-corrected volumes, UCSF-PDGM-0004_T1_bias.nii.gz); BraTS files have none
    suffix: str = ""
    #: a volume that cannot be read, holds NaN or disagrees with its siblings in shape or affine: error (one line
    #: naming the file) or skip (the exam is left out and counted in cohort.csv and the report)
    on_bad_volume: Literal["error", "skip"] = "error"


class Augment(Section):
    """TorchIO augmentation of training patients (never validation or test): each transform's probability."""

    #: left-right flip (TorchIO RandomFlip)
    flip: float = Field(0.5, ge=0, le=1)
    #: scale +-10%, rotation +-10 degrees, translation +-5 mm (TorchIO RandomAffine)
    affine: float = Field(0.5, ge=0, le=1)
    #: elastic deformation, 7 control points, up to 7.5 mm (TorchIO RandomElasticDeformation)
    elastic: float = Field(0.2, ge=0, le=1)
    #: gamma, bias field and noise, each with this probability (TorchIO RandomGamma, RandomBiasField, RandomNoise)
    intensity: float = Field(0.5, ge=0, le=1)


class Train3dMri(Section):
    #: MONAI's 3-D EfficientNet variant
    model: Literal[EFFICIENTNETS] = "efficientnet-b0"  # type: ignore[valid-type]
    #: a state_dict file of the same architecture (e.g. converted MONAI / timm-3d weights); nothing is downloaded.
    #: Tensors whose shape differs (the 4-channel stem, the 2-class head) keep their initialisation and are listed
    pretrained_weights: InputFile | None = None
    #: fine-tune only the last N of the 7 block stages plus the head (the reference's low-memory strategy); null:
    #: every layer. Frozen layers keep their BatchNorm statistics when weights are pretrained
    trainable_blocks: int | None = Field(2, ge=0, le=7)
    #: recompute the trainable blocks' activations in the backward pass: auto = on a GPU
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    #: bfloat16 autocast on a GPU (ignored on CPU)
    mixed_precision: bool = True
    #: the model's input grid (voxels); volumes are reoriented to RAS, then resampled to ``spacing`` and cropped or
    #: padded to ``size`` about the brain's centre, or (spacing null) resized to ``size``
    size: list[int] = Field(default_factory=lambda: [128, 128, 128], min_length=3, max_length=3)
    #: mm: resample, then crop/pad about the brain; null: resize to size
    spacing: list[float] | None = Field(None, min_length=3, max_length=3)
    #: per channel inside the brain: zscore (TorchIO's ZNormalization: mean and standard deviation) or robust
    #: (median and IQR / 1.349, which a large bright tumour barely moves, so normal tissue keeps its values)
    normalisation: Literal["zscore", "robust"] = "zscore"

    #: held-out test patients (stratified)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    #: k-fold CV on the training patients (the fold models' mean is scored on the test split); 1: one stratified
    #: training / validation split (the reference's 70/15/15 with the fractions below)
    folds: int = Field(1, ge=1)
    #: patients of the training split held for validation when folds is 1
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    #: repeated k-fold: the folds drawn again with other seeds
    repeats: int = Field(1, ge=1)
    #: split-conformal prediction sets of the held-out test (test_conformal.csv, metrics.json's conformal): the
    #: share of samples whose set should hold the true class, calibrated on the out-of-fold predictions
    conformal_coverage: float = Field(0.9, gt=0, lt=1)
    #: calibrate one threshold per class (Mondrian), so each class is covered at conformal_coverage; needs about
    #: 1/(1 - conformal_coverage) training samples a class or more. false: one threshold, coverage over all samples
    conformal_by_class: bool = False
    #: most epochs (early stopping may end training sooner)
    epochs: int = Field(30, ge=1)
    #: patients per training step
    batch_size: int = Field(4, ge=1)
    #: AdamW, with OneCycle warm-up to this learning rate and annealing
    lr: float = Field(1e-3, gt=0)
    #: AdamW's weight decay
    weight_decay: float = Field(1e-2, ge=0)
    #: early stopping on validation loss, the best weights restored
    patience: int = Field(7, ge=1)
    loss: Literal["focal", "cross_entropy"] = "focal"
    #: the focal loss's focusing parameter (loss: focal)
    focal_gamma: float = Field(2.0, ge=0)
    class_weights: Literal["balanced", "none"] = "none"
    #: weighted: classes drawn equally often (WeightedRandomSampler's draw, seeded per epoch); shuffle: permutation
    sampler: Literal["weighted", "shuffle"] = "weighted"
    augment: Augment = Field(default_factory=Augment)


STAGE = StageSpec(
    name="train_3d_mri",
    provides=("classifiers",),
    sections={"mri": Mri, "train_3d_mri": Train3dMri},
    outputs=(
        Output("models.json", "the classifier index (input kind volume)"),
        *CLASSIFIER_OUTPUTS,
        Output("{model}/model.json", "architecture, classes, frozen layers, the input grid and the sequences"),
        Output("{model}/member*.pt", "one state_dict per fold model (torch.load(weights_only=True))"),
        Output("{model}/tensorboard/**", "TensorBoard event files per fold"),
        Output(
            "cohort.csv",
            "every exam found: exam id, patient, the baseline a follow-up belongs to (follow_up_of), folder, IDH "
            "value as written, label, status (included or why left out), split",
        ),
        Output(
            "dataset.json",
            "the dataset's summary in the dataset layout (shared.dataset): classes, exams per class and split, and "
            "the cohort (exams found, included, left out by reason)",
        ),
        Output("samples.csv", "one row per included exam: sample, label, label_index, split, tumour_mask (and group)"),
        Output("volumes.npy", "(n, 4, *size) float16: the exams on the model's grid, normalised (the dataset layout)"),
        Output("masks.npy", "(n, 2, *size) uint8: the brain and the tumour segmentation's labels on the model's grid"),
        Output("grids.npz", "per exam: the model grid's affine, its own scan's affine and shape"),
    ),
    description="3-D EfficientNet on 4-channel MRI (FLAIR, T1, T1c, T2) for IDH status, and its volume dataset "
    "(explain scores the maps against the tumour mask)",
)
