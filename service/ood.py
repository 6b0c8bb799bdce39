"""What the routes say about images that are unlike the training data (`ml.trust`): the
operating point of the flag, and the refusal a caller can ask for instead of labels."""

from __future__ import annotations

import numpy as np

from service.errors import OutOfDistribution
from service.runtime import LoadedModel


def ood_summary(loaded: LoadedModel) -> dict[str, float | str]:
    """The flag's threshold and the share of validation images it flags, for an answer."""
    trust = loaded.engine.trust
    assert trust is not None  # noqa: S101  narrows the type: every classifier engine has one
    return {"ood_threshold": trust.threshold, "ood_flag_rate": float(trust.flag_rate)}


def refuse_flagged(loaded: LoadedModel, flags: np.ndarray) -> None:
    """Raise `OutOfDistribution` naming the flagged images (1-based), if any."""
    flagged = (np.flatnonzero(flags) + 1).tolist()
    if not flagged:
        return
    trust = loaded.engine.trust
    assert trust is not None  # noqa: S101  narrows the type: every classifier engine has one
    which = ", ".join(map(str, flagged[:20])) + (", ..." if len(flagged) > 20 else "")
    noun = "image" if len(flagged) == 1 else "images"
    raise OutOfDistribution(
        f"{noun} {which} of {len(flags)} unlike the training data (OOD score above "
        f"{loaded.name}'s threshold {trust.threshold:.1f}, which flags "
        f"{float(trust.flag_rate):.0%} of garments); send ood=flag to have them labelled anyway"
    )
