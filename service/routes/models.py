"""GET /models and /models/{name}: what is loaded, how big, how good, on which device."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.dependencies import RuntimeDep
from service.errors import NotFound, error_responses
from service.runtime import LoadedModel
from service.schemas import ModelInfo, ModelList, TrustInfo

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=ModelList,
    summary="The loaded models",
    responses=error_responses(401),
)
async def list_models(runtime: RuntimeDep) -> ModelList:
    return ModelList(models=[_info(loaded) for loaded in runtime.models.values()])


@router.get(
    "/models/{name}",
    response_model=ModelInfo,
    summary="One loaded model",
    responses=error_responses(401, 404),
)
async def get_model(
    name: Annotated[str, Path(description="a loaded model", examples=["mynet"])],
    runtime: RuntimeDep,
) -> ModelInfo:
    if name not in runtime.models:
        raise NotFound(f"model {name!r} is not loaded; loaded: {', '.join(runtime.models)}")
    return _info(runtime.models[name])


def _info(loaded: LoadedModel) -> ModelInfo:
    card = loaded.card
    test = card.get("metrics", {}).get("test", {})
    return ModelInfo(
        name=loaded.name,
        kind=loaded.kind,
        description=card.get("description", ""),
        parameters=card["parameters"],
        backend=loaded.engine.backend,
        device=loaded.device,
        sha256=card["weights"]["sha256"],
        version=loaded.version,
        trained_at=loaded.trained_at,
        test_metrics={
            key: value
            for key, value in test.items()
            if isinstance(value, int | float) and key != "count"
        },
        layers=list(loaded.layers),
        class_names=card.get("class_names", []) if loaded.kind == "classifier" else [],
        latent_dim=loaded.latent_dim,
        trust=_trust(loaded),
    )


def _trust(loaded: LoadedModel) -> TrustInfo | None:
    trust = loaded.engine.trust
    if trust is None:
        return None
    test = loaded.card["calibration"]["metrics"]["test"]
    return TrustInfo(
        temperature=trust.temperature,
        test_ece=test["calibrated"]["ece"],
        test_ece_uncalibrated=test["uncalibrated"]["ece"],
        ood_method=f"{loaded.card['ood']['method']} on {loaded.card['ood']['features']}",
        ood_threshold=trust.threshold,
        ood_flag_rate=float(trust.flag_rate),
    )
