"""Params sections of the model stages: model, trainer, pretrain, finetune and evaluate.

Each is one section of params.yaml; :class:`components.params.Params` assembles them with
the other layers' sections. :class:`ModelSections` is what the model stages read of it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from components.core.schema import Section, format_errors

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")


class ModelShape(Section):
    """Decoder dimensions (a preset, or overrides of one)."""

    n_layer: int = Field(..., ge=1)
    n_head: int = Field(..., ge=1)
    n_embd: int = Field(..., ge=8)
    block_size: int = Field(..., ge=2)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = False


class ModelParams(Section):
    """Model presets and the one in use; ``overrides`` replaces single keys of the preset."""

    preset: str = "tiny"
    presets: dict[str, ModelShape] = {
        "tiny": ModelShape(n_layer=2, n_head=4, n_embd=128, block_size=128),
        "gpt2-small": ModelShape(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    }
    overrides: dict[str, Any] = {}  # validated as a ModelShape once merged with the preset
    pad_vocab_to: int = Field(64, ge=1, description="vocabulary rounded up to a multiple")

    @model_validator(mode="after")
    def _check_preset(self) -> Self:
        problems = []
        if self.preset not in self.presets:
            problems.append(
                f"preset: unknown preset {self.preset!r}; known: {', '.join(self.presets)}"
            )
        unknown = set(self.overrides) - set(ModelShape.model_fields)
        if unknown:
            problems.append(
                f"overrides: unknown keys {sorted(unknown)}; known: "
                f"{', '.join(ModelShape.model_fields)}"
            )
        if not problems:
            try:
                self.shape()
            except ValidationError as error:
                problems += [f"overrides.{p}" for p in format_errors(error)]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def shape(self) -> ModelShape:
        """The selected preset with the overrides applied (validated again)."""
        base = self.presets[self.preset].model_dump()
        return ModelShape.model_validate({**base, **self.overrides})


class TrainerParams(Section):
    """Lightning ``Trainer`` settings shared by ``pretrain`` and ``finetune``."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = Field(1, description="per node; an int >= 1 or auto")
    strategy: Literal[STRATEGIES] = "auto"  # type: ignore[valid-type]
    num_nodes: int = Field(1, ge=1)
    # auto: bf16-mixed on a GPU that supports it, else 32-true.
    precision: Literal[PRECISIONS] = "auto"  # type: ignore[valid-type]
    compile: bool = False  # torch.compile of the inner model (GPU presets)
    matmul_precision: Literal["highest", "high", "medium"] = "high"  # "high" allows TF32
    seed: int = 1337

    @model_validator(mode="after")
    def _check_devices(self) -> Self:
        problems = []
        if isinstance(self.devices, int) and self.devices < 1:
            problems.append("devices: must be at least 1 (or auto)")
        # torch can shard on CPUs (gloo), but Lightning's FSDPStrategy refuses any accelerator
        # but CUDA; auto is left to the trainer, which knows whether a GPU is present.
        if self.strategy == "fsdp" and self.accelerator in {"cpu", "mps"}:
            problems.append(
                f"strategy: fsdp runs on CUDA GPUs only (Lightning refuses it with "
                f"accelerator: {self.accelerator}); set accelerator: gpu, or strategy: ddp"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class PretrainParams(Section):
    """Stage ``pretrain``: next-token training on the token files."""

    batch_size: int = Field(16, ge=1, description="windows per micro-batch and device")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_steps: int = Field(300, ge=1, description="optimizer steps")
    lr: float = Field(3e-3, gt=0)
    min_lr: float = Field(3e-4, ge=0)
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="global norm; 0 turns clipping off")
    val_every: int = Field(100, ge=1, description="optimizer steps between validations")
    val_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between checkpoints")
    log_every: int = Field(10, ge=1)
    loader_workers: int = Field(0, ge=0, description="background batch loaders per device")
    resume: bool = True  # continue from checkpoints/pretrain when its fingerprint matches

    @model_validator(mode="after")
    def _check_schedule(self) -> Self:
        problems = []
        if self.min_lr > self.lr:
            problems.append("min_lr: must not exceed lr")
        if self.warmup_steps > self.max_steps:
            problems.append("warmup_steps: must not exceed max_steps")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class FinetuneParams(Section):
    """Stage ``finetune``: a classification head on the pretrained decoder."""

    # builtin:movie-reviews | builtin:polarity | path/to/file.{csv,tsv,jsonl,parquet} | hf:<name>
    dataset: str = "builtin:movie-reviews"
    dataset_split: str = "train"  # the split of an hf: dataset to read
    text_column: str = "text"
    label_column: str = "label"
    # Tokens per text; longer ones are cut. None: the model's block_size.
    max_length: int | None = Field(None, ge=2)
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(8, ge=1)
    patience: int = Field(2, ge=1, description="epochs without a better val loss before stopping")
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    freeze_layers: int = Field(0, ge=0, description="lower blocks (and embeddings) kept fixed")
    pooling: Literal["last", "mean"] = "mean"  # the decoder's states -> one vector per text
    # Each block learns at this factor of the rate of the block above it (1: all alike).
    layer_lr_decay: float = Field(0.8, gt=0, le=1)
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="of max_epochs' steps")
    class_weights: Literal["none", "balanced"] = "balanced"  # of the training loss
    # Weight of the auxiliary next-token loss on the training texts (GPT-1); 0: none.
    lm_loss_weight: float = Field(0.0, ge=0)
    # Also train the same classifier from random weights: what pretraining is worth.
    compare_random_init: bool = True
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 1337

    @model_validator(mode="after")
    def _check_fractions(self) -> Self:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("test_fraction: val_fraction + test_fraction must be below 1")
        return self


class EvaluateParams(Section):
    """Stage ``evaluate``: language-model and classifier metrics beside baselines."""

    # Out-of-domain text: builtin:lee-background (news, one document per line) or a text file.
    ood_source: str = "builtin:lee-background"
    max_tokens: int = Field(200_000, ge=1, description="tokens scored per text, at most")
    batch_size: int = Field(16, ge=1)
    unigram_smoothing: float = Field(1.0, gt=0, description="add-k smoothing of the baseline")
    tfidf_max_features: int = Field(50_000, ge=1)
    tfidf_ngram_max: int = Field(2, ge=1, le=3)
    # Inverse regularisation strengths tried; the one with the best macro-F1 on the val split
    # is the baseline's: the classifier is held to a tuned baseline, not a default one.
    logreg_c: list[float] = Field(
        default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], min_length=1
    )
    # Bootstrap confidence intervals of accuracy and macro-F1 (test examples resampled).
    bootstrap_resamples: int = Field(1000, ge=100)
    confidence_level: float = Field(0.95, gt=0, lt=1)
    bootstrap_seed: int = 1337

    @field_validator("logreg_c", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        """A single C is a list of one."""
        return [value] if isinstance(value, int | float) else value

    @field_validator("logreg_c")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(c <= 0 for c in values):
            raise ValueError("every C must be above 0")
        return sorted(set(values))


def check_model_fit(model: ModelParams, finetune: FinetuneParams) -> list[str]:
    """Cross-section problems: finetune settings that the model's shape cannot honour."""
    shape = model.shape()
    problems = []
    if finetune.max_length is not None and finetune.max_length > shape.block_size:
        problems.append(
            f"finetune.max_length: {finetune.max_length} exceeds the model's block_size "
            f"{shape.block_size}"
        )
    if finetune.freeze_layers > shape.n_layer:
        problems.append(
            f"finetune.freeze_layers: {finetune.freeze_layers} exceeds the model's n_layer "
            f"{shape.n_layer}"
        )
    return problems


class ModelSections(Protocol):
    """The assembled params as the model stages read them."""

    @property
    def model(self) -> ModelParams: ...  # noqa: D102

    @property
    def trainer(self) -> TrainerParams: ...  # noqa: D102

    @property
    def pretrain(self) -> PretrainParams: ...  # noqa: D102

    @property
    def finetune(self) -> FinetuneParams: ...  # noqa: D102

    @property
    def evaluate(self) -> EvaluateParams: ...  # noqa: D102
