"""One router per resource. The app puts the API-key check (when a key is set) on
`PROTECTED_ROUTERS`; `PUBLIC_ROUTERS` (health, readiness, metrics) stay open for probes."""

from service.routes import (
    classify,
    embed,
    explain,
    generate,
    health,
    interpolate,
    models,
    reconstruct,
    repository,
    v2,
)

PROTECTED_ROUTERS = (
    classify.router,
    explain.router,
    embed.router,
    reconstruct.router,
    interpolate.router,
    generate.router,
    models.router,
    v2.router,
    repository.router,
)
# v2.fallback (the protocol's 404 for any other /v2 path) comes after every /v2 route.
PUBLIC_ROUTERS = (health.router, v2.public, v2.fallback)
