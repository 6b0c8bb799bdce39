"""The image grids drawn as PNG are capped at plots.MAX_GRID_PIXELS: `/reconstruct` of 256
images at scale 16 drew a 104-megapixel picture. Over the cap, the request is refused with the
usual JSON error, saying the limit and a scale that fits, before the model runs."""

from __future__ import annotations

import numpy as np
import pytest

from service import plots
from service.errors import InvalidParameter
from tests.service.support import decode_png, make_settings, png, serving

pytestmark = pytest.mark.anyio

SHIRT = np.zeros((28, 28), np.uint8)
SHIRT[6:22, 8:20] = 200


def uploads(count: int) -> dict:
    data = png(SHIRT)
    return {"files": [("file", (f"{i}.png", data, "image/png")) for i in range(count)]}


@pytest.fixture(scope="module")
async def vae(anyio_backend):
    async with serving(make_settings(models=["vae"])) as client:
        yield client


@pytest.mark.parametrize(("count", "scale", "fits"), [(256, 16, 6), (256, 7, 6), (64, 13, 12)])
async def test_reconstruct_refuses_a_png_over_the_limit_before_the_model_runs(
    vae, count, scale, fits
):
    batcher = vae.app.state.runtime.models["vae"].batchers["reconstruct"]
    original, calls = batcher.fn, []

    def counted(inputs):
        calls.append(len(inputs))
        return original(inputs)

    batcher.fn = counted
    try:
        response = await vae.post(f"/reconstruct?format=png&scale={scale}", **uploads(count))
    finally:
        batcher.fn = original
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert str(plots.MAX_GRID_PIXELS) in error["message"]
    assert f"scale={fits} or less" in error["message"] and "fewer images" in error["message"]
    assert calls == [], "the model ran for a picture that was then refused"


async def test_reconstruct_at_the_largest_fitting_scale_draws_the_png(vae):
    response = await vae.post("/reconstruct?format=png&scale=12", **uploads(64))
    assert response.status_code == 200, response.text
    width, height = decode_png(response.content).size
    assert width * height <= plots.MAX_GRID_PIXELS
    assert (width, height) == plots.grid_size(2 * 64, 16, 12)


async def test_json_answers_have_no_picture_to_cap(vae):
    response = await vae.post("/reconstruct?scale=16", **uploads(256))
    assert response.status_code == 200, response.text
    assert len(response.json()["reconstructions"]) == 256


def test_the_route_description_states_what_fits():
    """The figures in /reconstruct's description (and the README): 256 images fit up to scale
    6, 64 up to scale 12."""
    for count, largest in ((256, 6), (64, 12)):
        plots.check_comparison_grid_size(count, largest)
        with pytest.raises(InvalidParameter):
            plots.check_comparison_grid_size(count, largest + 1)


def test_the_other_grids_fit_at_their_largest_parameters():
    """/generate (n <= 64, ceil(sqrt(n)) columns) and /interpolate (steps <= 64, one row) at
    scale 16 stay under the cap, so their own checks in `plots.grid` never refuse them."""
    plots.check_grid_size(64, 8, 16)
    plots.check_grid_size(64, 64, 16)


def test_grid_itself_refuses_to_draw_over_the_limit():
    cells = [np.zeros((28, 28), np.float32)] * 512
    with pytest.raises(InvalidParameter, match="use scale=6 or less"):
        plots.grid(cells, 16, 16)
