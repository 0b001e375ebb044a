"""The training commands' options, as frozen dataclasses.

Each training command maps its options onto one of these dataclasses and calls one function
of :mod:`facelivenet.train.run`. Validation happens here, so a bad value fails before
any data is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelivenet.config import PRESETS, STANDARDIZATIONS
from facelivenet.data.datasets import CKPLUS_SUBJECT_REGEX
from facelivenet.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "momentum", "rmsprop", "adagrad", "adadelta")
STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("fp32", "bf16", "fp16")
#: Metric-learning terms added to the identity softmax (alpha-weighted).
VERIFICATION_LOSSES = ("triplet-icpr", "triplet-plus", "center", "none", "arcface", "cosface")
#: Losses that replace the identity softmax by a normalised margin head (no centers).
MARGIN_LOSSES = ("arcface", "cosface")
#: Default margins of the margin heads (ArcFace and CosFace papers).
DEFAULT_ANGULAR_MARGIN = {"arcface": 0.5, "cosface": 0.35}


def _network_options(cfg: Any) -> None:
    _choice("preset", cfg.preset, tuple(PRESETS))
    if not 0.0 < cfg.width <= 4.0:
        raise ConfigError(f"width must be in (0, 4]. Received: width={cfg.width}")
    _choice("standardization", cfg.standardization, STANDARDIZATIONS)
    _positive("embedding_size", cfg.embedding_size)


def _positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ConfigError(f"{name} must be >= 1. Received: {name}={value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}. Received: {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Settings every training command shares.

    Attributes:
        data: dataset folder (one sub-folder per class).
        out: final model file (``.keras``).
        work_dir: checkpoints, logs and the best model; default ``<out without .keras>.train``.
        epochs: epochs to train (an lr schedule may stop earlier).
        batch_size: global batch size (split across replicas under a strategy).
        steps_per_epoch: cap on steps per epoch (None: one pass over the data).
        optimizer: one of :data:`OPTIMIZERS`.
        learning_rate: constant rate when no ``lr_schedule`` is given.
        lr_schedule: ``epoch: lr`` schedule file.
        val_fraction: share of identities / subjects held out for validation.
        seed: seeds the split, the data order, augmentation and initialisation.
        random_crop, flip: training augmentation.
        resume: continue from the checkpoint in ``work_dir``.
        strategy: ``default`` (one device), ``mirrored`` (all local devices) or
            ``multiworker`` (``TF_CONFIG`` cluster).
        precision: ``fp32``, ``bf16`` (mixed bfloat16) or ``fp16`` (mixed float16 with
            loss scaling).
        bn_batches: batches used after each epoch to re-estimate the batch-norm
            inference statistics (0: keep the moving averages of the 0.995 decay).
        quiet: no progress bar.
    """

    data: str
    out: str
    work_dir: str | None = None
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str | None = None
    val_fraction: float = 0.1
    seed: int = 0
    random_crop: bool = True
    flip: bool = True
    resume: bool = False
    strategy: str = "default"
    precision: str = "fp32"
    bn_batches: int = 20
    quiet: bool = False

    def __post_init__(self) -> None:
        if not str(self.out).endswith(".keras"):
            raise ConfigError(f"the output model must be a .keras file. Received: out={self.out!r}")
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        if self.steps_per_epoch is not None:
            _positive("steps_per_epoch", self.steps_per_epoch)
        if self.bn_batches < 0:
            raise ConfigError(f"bn_batches must be >= 0. Received: {self.bn_batches}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("precision", self.precision, PRECISIONS)
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0. Received: {self.learning_rate}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1). Received: {self.val_fraction}")

    @property
    def work_path(self) -> Path:
        if self.work_dir:
            return Path(self.work_dir)
        out = Path(self.out)
        return out.with_name(out.stem + ".train")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VerificationLossConfig:
    """The metric-learning term of L1 = softmax + alpha * Lc (DESIGN.md §3).

    Attributes:
        kind: ``triplet-icpr`` (ICPR eq. 3-5), ``triplet-plus`` (FaceLiveNet+ eq. 3-4),
            ``center`` (plain center loss), ``none`` (softmax alone), or a margin head
            that replaces the softmax: ``arcface`` (additive angular margin) or
            ``cosface`` (large-margin cosine); see DESIGN.md §3b.
        alpha: weight of Lc (paper: 1e-4 for the ICPR form).
        beta: ICPR margin (paper: 10).
        theta: ICPR weight of D_psi (paper: 0.5).
        margin: FaceLiveNet+ margin beta0 between own-center and other-center distances.
        center_rate: gamma of the center update (ICPR eq. 6).
        scale: s of the margin heads (logits ``s * cos``; 30 suits a few thousand classes).
        angular_margin: m of the margin heads; None: 0.5 for ArcFace, 0.35 for CosFace.
    """

    kind: str = "triplet-icpr"
    alpha: float = 1e-4
    beta: float = 10.0
    theta: float = 0.5
    margin: float = 1.0
    center_rate: float = 0.5
    scale: float = 30.0
    angular_margin: float | None = None

    @property
    def uses_centers(self) -> bool:
        return self.kind not in ("none", *MARGIN_LOSSES)

    @property
    def head_margin(self) -> float:
        """The margin of an ArcFace / CosFace head (its default when not given)."""
        if self.angular_margin is not None:
            return float(self.angular_margin)
        return DEFAULT_ANGULAR_MARGIN.get(self.kind, 0.0)

    def __post_init__(self) -> None:
        _choice("verification loss", self.kind, VERIFICATION_LOSSES)
        if not self.scale > 0:
            raise ConfigError(f"the margin head's scale must be > 0. Received: {self.scale}")
        if self.angular_margin is not None and not 0.0 <= self.angular_margin < 1.5:
            raise ConfigError(f"angular margin must be in [0, 1.5). Received: {self.angular_margin}")
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0. Received: {self.alpha}")
        if not 0.0 < self.center_rate <= 1.0:
            raise ConfigError(f"center update rate must be in (0, 1]. Received: {self.center_rate}")


@dataclass(frozen=True)
class FreshNetworkConfig(TrainConfig):
    """Settings of a command that can build a fresh network: its architecture.

    Attributes:
        preset, width, embedding_size, image_size, weight_decay, dropout, standardization:
            architecture of a fresh model (see :class:`facelivenet.config.NetworkConfig`).
    """

    preset: str = "simple"
    width: float = 1.0
    embedding_size: int = 128
    image_size: int = 160
    weight_decay: float = 5e-5
    dropout: float = 0.5
    standardization: str = "fixed"

    def __post_init__(self) -> None:
        super().__post_init__()
        _network_options(self)


@dataclass(frozen=True)
class VerificationConfig(FreshNetworkConfig):
    """Stage 1: stem + branch 1 on an identity dataset (folders = identities).

    Attributes:
        model: start from this model instead of a fresh one (architecture options ignored).
        preset, embedding_size, image_size, weight_decay, dropout, standardization:
            architecture of a fresh model (see :class:`facelivenet.config.NetworkConfig`).
        loss: the metric-learning term.
        min_images_per_class: identities with fewer images are skipped.
        val_pairs, val_images: LFW-style pairs file and image folder, evaluated each epoch.
    """

    model: str | None = None
    loss: VerificationLossConfig = field(default_factory=VerificationLossConfig)
    min_images_per_class: int = 2
    val_pairs: str | None = None
    val_images: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.val_pairs is None) != (self.val_images is None):
            raise ConfigError("--val-pairs and --val-images go together")


@dataclass(frozen=True)
class ExpressionConfig(FreshNetworkConfig):
    """Stage 2: branch 2 on an expression dataset (folders = expressions).

    Attributes:
        model: the stage-1 model (required unless ``from_scratch``).
        from_scratch: fresh model, everything trainable (no stage-1 model).
        train_all: with ``model``: train the stem and branch 1 too (fine-tune the whole
            network on expressions; the embedding changes, so recalibrate and re-evaluate
            verification afterwards).
        keep_branch2: keep ``model``'s branch 2 (a model already trained for expressions)
            instead of copying branch 1 into it.
        center_loss_factor: weight of the center loss on branch-2 features (0: off).
        center_loss_alfa: the reference code's center rate: centers move ``1 - alfa`` of
            the way to their batch mean each step.
        subject_regex: subject in file names (CK+ style) for the split.
        val_data: a separate validation folder (same class names) instead of a split.
        preset, embedding_size, image_size, weight_decay, dropout, standardization:
            architecture when ``from_scratch``.
    """

    model: str | None = None
    from_scratch: bool = False
    train_all: bool = False
    keep_branch2: bool = False
    center_loss_factor: float = 0.0
    center_loss_alfa: float = 0.5
    subject_regex: str = CKPLUS_SUBJECT_REGEX
    val_data: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.from_scratch == (self.model is not None):
            raise ConfigError("give either --model STAGE1.keras or --from-scratch")
        if self.from_scratch and (self.train_all or self.keep_branch2):
            raise ConfigError("--train-all and --keep-branch2 go with --model")
        if self.center_loss_factor < 0:
            raise ConfigError(f"center_loss_factor must be >= 0. Received: {self.center_loss_factor}")
        if not 0.0 <= self.center_loss_alfa < 1.0:
            raise ConfigError(f"center_loss_alfa must be in [0, 1). Received: {self.center_loss_alfa}")


@dataclass(frozen=True)
class MultitaskConfig(TrainConfig):
    """FaceLiveNet+: joint training, L3 = (1 + w1) L1 + w2 L2 with dynamic weights.

    Attributes:
        model: the stage-1 model to start from.
        loss: the metric-learning term of L1.
        weight_lr: learning rate of the dynamic-weight unit (plain SGD on its own objective).
        keep_branch2: keep the model's branch 2 instead of copying branch 1 into it.
        subject_regex: subject (identity) in file names; folders are expressions.
    """

    model: str = ""
    loss: VerificationLossConfig = field(default_factory=VerificationLossConfig)
    weight_lr: float = 0.1
    keep_branch2: bool = False
    subject_regex: str = CKPLUS_SUBJECT_REGEX

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ConfigError("multi-task training starts from a model: give --model STAGE1.keras")
        if not self.weight_lr > 0:
            raise ConfigError(f"weight_lr must be > 0. Received: {self.weight_lr}")


@dataclass(frozen=True)
class JointConfig(FreshNetworkConfig):
    """Joint training of the whole network on a joint manifest (:mod:`facelivenet.data.joint`).

    ``data`` is the manifest folder (``manifest.jsonl``). The network uses the
    ``similarity`` geometry (five landmarks onto the template) at ``image_size``.

    Attributes:
        model: start from this model's weights (architecture options then ignored).
        teacher_cache: folder of the identity teacher's embeddings (``teacher-cache``);
            None trains without distillation.
        loss: the identity head (``none`` = softmax, ``arcface``, ``cosface``).
        weight_identity, weight_distill, weight_expression, weight_smiling: the terms'
            weights in the joint objective.
        gray_share: share of colour faces turned grey in training.
        source_repeats: ``(kind, n)`` pairs: each training face of that source kind
            enters every epoch's pool ``n`` times (default 1), to weigh small sources up.
        min_images_per_identity: identities with fewer training images get no identity
            label (their faces still train distillation and expressions).
        max_val_images: cap on held-out identity images validated each epoch.
    """

    model: str | None = None
    teacher_cache: str | None = None
    loss: VerificationLossConfig = field(default_factory=lambda: VerificationLossConfig(kind="cosface"))
    weight_identity: float = 1.0
    weight_distill: float = 10.0
    weight_expression: float = 1.0
    weight_smiling: float = 0.5
    gray_share: float = 0.25
    source_repeats: tuple[tuple[str, int], ...] = ()
    min_images_per_identity: int = 2
    max_val_images: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss.uses_centers:
            raise ConfigError(f"joint training takes --loss none, arcface or cosface. Received: {self.loss.kind}")
        for name in ("weight_identity", "weight_distill", "weight_expression", "weight_smiling"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0. Received: {getattr(self, name)}")
        if not 0.0 <= self.gray_share <= 1.0:
            raise ConfigError(f"gray_share must be in [0, 1]. Received: {self.gray_share}")
        from facelivenet.data.joint import SOURCE_KINDS

        repeats = tuple((str(k), n) for k, n in dict(self.source_repeats).items())
        for kind, n in repeats:
            if kind not in SOURCE_KINDS:
                raise ConfigError(f"source_repeats: unknown source kind {kind!r}; choose from {list(SOURCE_KINDS)}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"source_repeats: {kind} must repeat an integer >= 1 times. Received: {n!r}")
        object.__setattr__(self, "source_repeats", repeats)
        _positive("min_images_per_identity", self.min_images_per_identity)
