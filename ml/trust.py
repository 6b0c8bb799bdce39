"""What a classifier's card says about trusting its answers, ready to apply: the temperature
that calibrates its probabilities and the out-of-distribution score with its threshold.

`fmnist-calibrate` (`ml.calibrate`) fits both and records them in the card (`calibration` and
`ood`); `read_trust` reads them back, the statistics file hash-verified like the weights, and
`Trust.apply` turns a batch of the graph's outputs into what the service answers.
Plain numpy: the service applies it on either backend without PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.calibration import softmax
from ml.cards import CheckpointError, read_verified
from ml.ood import DEFAULT_FLAG_RATE, MahalanobisScore
from ml.ood import INPUTS as OOD_INPUTS

OUTPUTS = ("probabilities", "uncalibrated_probabilities", "ood_score", "ood_flag")
"""What `Trust.apply` gives per batch."""
INPUTS = tuple(dict.fromkeys(("logits", *OOD_INPUTS)))
"""The classifier graph's outputs it needs (`ml.graphs`)."""


@dataclass(frozen=True)
class Trust:
    temperature: float
    score: MahalanobisScore
    threshold: float  # an image whose score is above it is flagged
    flag_rate: str  # the share of validation images flagged at that threshold

    def apply(
        self, outputs: Mapping[str, np.ndarray], wanted: tuple[str, ...] = OUTPUTS
    ) -> dict[str, np.ndarray]:
        """The `wanted` ones of `OUTPUTS` for a batch of the graph's outputs: the logits, and
        the OOD score's `ml.ood.INPUTS` when the score or the flag is wanted."""
        logits = outputs["logits"]
        values = {}
        if "probabilities" in wanted:
            values["probabilities"] = softmax(logits, self.temperature).astype(np.float32)
        if "uncalibrated_probabilities" in wanted:
            values["uncalibrated_probabilities"] = softmax(logits).astype(np.float32)
        if "ood_score" in wanted or "ood_flag" in wanted:
            scores = self.score(outputs)
            values |= {"ood_score": scores.astype(np.float32), "ood_flag": scores > self.threshold}
        return values


def read_trust(
    name: str,
    card: dict[str, Any],
    checkpoint_dir: str | os.PathLike,
    flag_rate: str | None = None,
) -> Trust:
    """The trust record of classifier `name`'s card, flagging at `flag_rate` (one of the card's
    thresholds; default the card's own choice). Raises CheckpointError when the card has none
    or its statistics do not verify."""
    calibration, ood = card.get("calibration"), card.get("ood")
    if calibration is None or ood is None:
        raise CheckpointError(
            f"the card of {name!r} records no calibration or OOD statistics: run "
            f"`fmnist-calibrate --model {name}`"
        )
    rate = flag_rate or ood.get("default_flag_rate", DEFAULT_FLAG_RATE)
    if rate not in ood["thresholds"]:
        raise CheckpointError(
            f"{name}'s card has no OOD threshold for flag rate {rate}; it has "
            f"{', '.join(ood['thresholds'])}"
        )
    data = read_verified(ood["statistics"], checkpoint_dir, f"{name}'s OOD statistics")
    try:
        score = MahalanobisScore.from_bytes(data)
    except ValueError as exc:
        raise CheckpointError(f"{name}'s OOD statistics: {exc}") from None
    return Trust(calibration["temperature"], score, ood["thresholds"][rate], rate)
