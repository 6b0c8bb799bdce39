"""One router per resource; `ROUTERS` is what the app includes."""

from service.routes import classify, embed, generate, health, interpolate, models, reconstruct

ROUTERS = (
    classify.router,
    embed.router,
    reconstruct.router,
    interpolate.router,
    generate.router,
    models.router,
    health.router,
)
