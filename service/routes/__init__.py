"""One router per resource. The app puts the API-key check (when a key is set) on
`PROTECTED_ROUTERS`; `PUBLIC_ROUTERS` (health, readiness, metrics) stay open for probes."""

from service.routes import classify, embed, generate, health, interpolate, models, reconstruct

PROTECTED_ROUTERS = (
    classify.router,
    embed.router,
    reconstruct.router,
    interpolate.router,
    generate.router,
    models.router,
)
PUBLIC_ROUTERS = (health.router,)
