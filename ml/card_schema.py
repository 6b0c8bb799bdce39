"""What a model card must say, checked on every load (pydantic, no PyTorch).

A card is data that goes into a model constructor, the service's `/models` answers and its
start-up, so it is not trusted as written: `validate_card` checks its shape and types, its
internal consistency (metrics against their own confusion matrix and counts, the validation
metrics against the selected epoch, maps and graphs against the model's layers), and that its
name, kind, architecture and hyper-parameters are the registry's. It cannot tell a consistent
set of inflated numbers from the truth; `tests/ml/test_shipped_checkpoints.py` re-measures the
shipped cards' metrics on the data.

Format 1 is the shipped checkpoints' (trained before cards recorded the split and the full
rerun command); format 2 requires both.
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ml.calibration import T_RANGE
from ml.fashion_mnist import CLASS_NAMES, IMAGE_SIZE, PIXEL_MEAN, PIXEL_STD
from ml.graphs import GRAPHS
from ml.ood import FEATURES as OOD_FEATURES
from ml.ood import FLAG_RATES
from ml.ood import METHOD as OOD_METHOD
from ml.registry import EMBEDDING_LAYERS, Kind, get_spec

CARD_FORMAT = 2
SHA256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
# What the metrics are rounded to when written (ml.evaluate), hence how closely they must agree.
ACCURACY_TOLERANCE, NATS_TOLERANCE = 1e-4, 2e-3
# Library versions a rerun needs to match (format 2).
REQUIRED_VERSIONS = ("python", "torch", "numpy", "safetensors", "platform", "cpu_capability")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(Section):
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # a plain name: the file lies beside the card
    sha256: SHA256


class Normalisation(Section):
    mean: Literal[PIXEL_MEAN]
    std: Literal[PIXEL_STD]
    applied_in: Literal["forward"]


class InputSpec(Section):
    shape: tuple[Literal[1], Literal[IMAGE_SIZE], Literal[IMAGE_SIZE]]
    range: tuple[Literal[0.0], Literal[1.0]]
    polarity: str
    normalisation: Normalisation


class Recipe(Section):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: float = Field(gt=0.0)
    weight_decay: NonNegativeFloat
    label_smoothing: float = Field(ge=0.0, lt=1.0)
    augmentations: list[str]
    weight_average: float | None = Field(default=None, gt=0.0, lt=1.0)


class DataRecord(Section):
    source: str
    train: PositiveInt
    val: PositiveInt
    test: PositiveInt


class SplitRecord(Section):
    """The validation split: held out of the 60,000 training images by a seeded permutation."""

    seed: int
    val_indices_sha256: SHA256  # of the indices into the training file, as little-endian int64
    recorded_by: str | None = None  # set where the record was added after training


class Training(Section):
    command: str = Field(pattern=r"^fmnist-train( |$)")
    seed: int
    recipe: Recipe
    optimizer: str
    selected_epoch: PositiveInt
    device: str
    threads: PositiveInt
    seconds: NonNegativeFloat
    finished_at: AwareDatetime | None = None  # UTC; cards of format 1 do not record it
    data: DataRecord
    split: SplitRecord | None = None


class ClassifierMetrics(Section):
    loss: NonNegativeFloat
    accuracy: Fraction
    per_class_accuracy: dict[str, Fraction]
    confusion_matrix: list[list[NonNegativeInt]]
    count: PositiveInt

    @model_validator(mode="after")
    def _agrees_with_its_confusion_matrix(self) -> ClassifierMetrics:
        matrix = self.confusion_matrix
        classes = len(CLASS_NAMES)
        if len(matrix) != classes or any(len(row) != classes for row in matrix):
            raise ValueError(f"the confusion matrix must be {classes} x {classes}")
        if sum(map(sum, matrix)) != self.count:
            raise ValueError(
                f"the confusion matrix counts {sum(map(sum, matrix))}, not {self.count}"
            )
        correct = sum(matrix[c][c] for c in range(classes))
        if abs(self.accuracy - correct / self.count) > ACCURACY_TOLERANCE:
            raise ValueError(
                f"accuracy {self.accuracy} disagrees with the confusion matrix "
                f"({correct} of {self.count} correct)"
            )
        if list(self.per_class_accuracy) != list(CLASS_NAMES):
            raise ValueError("per_class_accuracy must name the ten classes in order")
        for c, value in enumerate(self.per_class_accuracy.values()):
            row = sum(matrix[c])
            if row and abs(value - matrix[c][c] / row) > ACCURACY_TOLERANCE:
                raise ValueError(
                    f"per-class accuracy of {CLASS_NAMES[c]!r} disagrees with the matrix"
                )
        return self


class VAEMetrics(Section):
    """Nats per image: one-sample negative ELBO, BCE on continuous pixels (see the README)."""

    bce: NonNegativeFloat
    kl: NonNegativeFloat
    loss: NonNegativeFloat
    bce_floor: NonNegativeFloat | None = None  # the least BCE possible on these images
    count: PositiveInt

    @model_validator(mode="after")
    def _loss_is_the_sum(self) -> VAEMetrics:
        if abs(self.loss - (self.bce + self.kl)) > NATS_TOLERANCE:
            raise ValueError(f"loss {self.loss} is not BCE {self.bce} + KL {self.kl}")
        if self.bce_floor is not None and self.bce < self.bce_floor:
            raise ValueError(f"BCE {self.bce} is below its floor {self.bce_floor}")
        return self


class PcaMap(Section):
    mean: list[float] = Field(min_length=2)
    components: list[list[float]] = Field(min_length=2, max_length=2)
    explained_variance_ratio: list[Fraction] = Field(min_length=2, max_length=2)
    points: list[tuple[float, float]]
    point_labels: list[Annotated[int, Field(ge=0, lt=len(CLASS_NAMES))]]

    @model_validator(mode="after")
    def _shapes_agree(self) -> PcaMap:
        if any(len(axis) != len(self.mean) for axis in self.components):
            raise ValueError("each principal axis must have as many entries as the mean")
        if len(self.points) != len(self.point_labels):
            raise ValueError("points and point_labels must have the same length")
        return self


class Onnx(Section):
    opset: PositiveInt
    torch: str
    graphs: dict[str, FileEntry]


class CalibrationMetrics(Section):
    accuracy: Fraction
    ece: Fraction
    nll: NonNegativeFloat
    brier: Annotated[float, Field(ge=0.0, le=2.0)]


class Calibration(Section):
    """The temperature that calibrates the probabilities (`ml.calibration`)."""

    method: Literal["temperature"]
    temperature: float = Field(ge=T_RANGE[0], le=T_RANGE[1])
    fitted_on: Literal["validation"]
    ece_bins: PositiveInt
    metrics: dict[
        Literal["validation", "test"],
        dict[Literal["uncalibrated", "calibrated"], CalibrationMetrics],
    ]

    @model_validator(mode="after")
    def _changes_no_prediction(self) -> Calibration:
        for split, versions in self.metrics.items():
            if set(versions) != {"uncalibrated", "calibrated"}:
                raise ValueError(f"calibration metrics of {split} need uncalibrated and calibrated")
            if versions["uncalibrated"].accuracy != versions["calibrated"].accuracy:
                raise ValueError(
                    f"a temperature changes no prediction, but the {split} accuracy differs "
                    "before and after calibration"
                )
        return self


class OodSet(Section):
    count: PositiveInt
    auroc: Fraction
    fpr_at_95_tpr: Fraction


class Ood(Section):
    """The out-of-distribution score's statistics and thresholds (`ml.ood`)."""

    method: Literal[OOD_METHOD]
    features: Literal[OOD_FEATURES]
    fitted_on: Literal["train"]
    statistics: FileEntry
    thresholds: dict[str, NonNegativeFloat]
    default_flag_rate: str
    flagged: dict[Literal["validation", "test"], dict[str, Fraction]]
    sets: dict[str, OodSet]

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> Ood:
        if list(self.thresholds) != list(FLAG_RATES):
            raise ValueError(f"ood.thresholds must be those of the flag rates {list(FLAG_RATES)}")
        values = list(self.thresholds.values())
        if values != sorted(values, reverse=True):
            raise ValueError("a higher flag rate needs a lower threshold")
        if self.default_flag_rate not in self.thresholds:
            raise ValueError(f"ood.default_flag_rate must be one of {list(FLAG_RATES)}")
        return self


class Card(Section):
    format: Literal[1, 2]
    name: str
    kind: Kind
    description: str
    architecture: str
    hyper_parameters: dict[str, Any]
    parameters: PositiveInt
    class_names: list[str]
    input: InputSpec
    training: Training
    history: list[dict[str, float]] = Field(min_length=1)
    metrics: dict[Literal["validation", "test"], dict[str, Any]]
    embedding_maps: dict[str, PcaMap]
    versions: dict[str, str]
    weights: FileEntry
    onnx: Onnx | None = None
    calibration: Calibration | None = None  # classifiers; cards fitted by fmnist-calibrate
    ood: Ood | None = None

    @field_validator("class_names")
    @classmethod
    def _the_ten_classes(cls, value: list[str]) -> list[str]:
        if value != list(CLASS_NAMES):
            raise ValueError(f"class_names must be {list(CLASS_NAMES)}")
        return value

    @model_validator(mode="after")
    def _matches_the_registry(self, info: ValidationInfo) -> Card:
        expected = (info.context or {}).get("name", self.name)
        if self.name != expected:
            raise ValueError(f"the card is named {self.name!r}, not {expected!r}")
        spec = get_spec(self.name)
        for field in ("kind", "architecture"):
            if getattr(self, field) != getattr(spec, field):
                raise ValueError(
                    f"{field} is {getattr(self, field)!r}, but {self.name} is "
                    f"{getattr(spec, field)!r} in the registry"
                )
        spec.check_hyper_parameters(self.hyper_parameters)
        self._check_metrics()
        self._check_layers()
        self._check_trust()
        if self.format >= 2:
            self._check_rerun_record()
        return self

    def _check_metrics(self) -> None:
        if set(self.metrics) != {"validation", "test"}:
            raise ValueError("metrics must have validation and test")
        schema = ClassifierMetrics if self.kind == "classifier" else VAEMetrics
        metrics = {split: schema.model_validate(value) for split, value in self.metrics.items()}
        data = self.training.data
        for split, count in (("validation", data.val), ("test", data.test)):
            if metrics[split].count != count:
                raise ValueError(
                    f"{split} metrics count {metrics[split].count} images, the data {count}"
                )
        epochs = {int(row.get("epoch", 0)): row for row in self.history}
        selected = epochs.get(self.training.selected_epoch)
        if selected is None:
            raise ValueError(f"the history has no epoch {self.training.selected_epoch}")
        validation = metrics["validation"]
        key, value = (
            ("val_accuracy", validation.accuracy)
            if isinstance(validation, ClassifierMetrics)
            else ("val_loss", validation.loss)
        )
        if abs(selected.get(key, float("nan")) - value) > NATS_TOLERANCE:
            raise ValueError(
                f"validation {key.removeprefix('val_')} {value} is not the selected epoch's "
                f"({selected.get(key)})"
            )

    def _check_layers(self) -> None:
        layers = set(EMBEDDING_LAYERS[self.kind])
        if set(self.embedding_maps) != layers:
            raise ValueError(f"embedding_maps must be those of {', '.join(sorted(layers))}")
        widths = {"logits": len(CLASS_NAMES), "latent": self.hyper_parameters.get("latent_dim")}
        for layer, width in widths.items():
            if layer in layers and len(self.embedding_maps[layer].mean) != width:
                raise ValueError(
                    f"the {layer} map has {len(self.embedding_maps[layer].mean)} "
                    f"dimensions, the model {width}"
                )
        if self.onnx is not None and set(self.onnx.graphs) != set(GRAPHS[self.kind]):
            raise ValueError(f"onnx.graphs must be {', '.join(sorted(GRAPHS[self.kind]))}")

    def _check_trust(self) -> None:
        if self.kind != "classifier":
            if self.calibration is not None or self.ood is not None:
                raise ValueError("only a classifier has calibration and ood records")
            return
        if (self.calibration is None) != (self.ood is None):
            raise ValueError("calibration and ood are fitted together: the card needs both")
        if self.calibration is None:
            return
        for split, versions in self.calibration.metrics.items():
            accuracy = self.metrics[split]["accuracy"]
            if abs(versions["calibrated"].accuracy - accuracy) > ACCURACY_TOLERANCE:
                raise ValueError(
                    f"the calibration's {split} accuracy is not the card's ({accuracy})"
                )

    def _check_rerun_record(self) -> None:
        training = self.training
        if training.split is None:
            raise ValueError("training.split is required from card format 2")
        missing = [name for name in REQUIRED_VERSIONS if name not in self.versions]
        if missing:
            raise ValueError(f"versions lacks {', '.join(missing)}")
        recorded = command_options(training.command)
        for option, value in (
            ("--seed", str(training.seed)),
            ("--device", training.device),
            ("--threads", str(training.threads)),
        ):
            if recorded.get(option) != value:
                raise ValueError(
                    f"training.command must say {option} {value} (it says {recorded.get(option)})"
                )


def command_options(command: str) -> dict[str, str]:
    """The last value given to each `--option value` in a command line (as argparse reads it)."""
    words = shlex.split(command)
    options: dict[str, str] = {}
    for word, following in zip(words, [*words[1:], ""], strict=True):
        if word.startswith("--") and "=" in word:
            option, value = word.split("=", 1)
            options[option] = value
        elif word.startswith("--") and not following.startswith("--"):
            options[word] = following
    return options


def validate_card(raw: Any, name: str) -> dict[str, Any]:
    """`raw`, checked as the card of model `name`. Raises ValueError (pydantic's ValidationError
    is one) saying what is wrong."""
    Card.model_validate(raw, context={"name": name})
    return raw
