"""The page at `/` in a real Chromium: classify an upload and a drawing, explain, map, reconstruct,
interpolate, generate, errors a person can read, the models' test results, phone width."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from service import plots
from tests.live_service import CHECKPOINT_DIR
from tests.web.conftest import (
    UPLOAD_LIMIT,
    WAIT_S,
    console_errors,
)

STATIC = Path(__file__).resolve().parents[2] / "service" / "static"
PAGE_BUDGET_BYTES = 100_000
PHONE_WIDTH = 390


@pytest.fixture(scope="module")
def trouser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trouser from the real test set (not the one the page bundles), else the bundled one."""
    from ml.data import DatasetError, load_split, locate

    try:
        split = load_split(locate(), "test")
    except DatasetError:
        return STATIC / "examples" / "trouser.png"  # also a real test image
    second = int(np.flatnonzero(split.labels.numpy() == 1)[1])
    path = tmp_path_factory.mktemp("upload") / f"test-{second}-trouser.png"
    Image.fromarray(split.images[second].numpy()).save(path)
    return path


def wait_for(browser, condition: Callable[[], object], what: str) -> object:
    """`condition()`'s first truthy value; fails after WAIT_S, showing the page's message."""

    def check(_driver) -> object:
        return condition()

    waiting = WebDriverWait(
        browser, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    try:
        return waiting.until(check)
    except TimeoutException as exc:
        shown = browser.find_element(By.ID, "error").text
        raise AssertionError(f"timed out waiting for {what}; page's message: {shown!r}") from exc


def open_page(browser, url: str) -> None:
    browser.get(f"{url}/")
    wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#examples button")) == 10,
        "the test images",
    )
    wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#model-rows th")) == 3,
        "the models",
    )


def text(browser, selector: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text


def prediction(browser) -> str:
    labels = browser.find_elements(By.CSS_SELECTOR, "#prediction .label")
    return labels[0].text if labels else ""


def loaded(image: WebElement) -> int:
    """The image's natural width once it has loaded (0 before)."""
    return image.get_property("complete") and image.get_property("naturalWidth")


def choose_example(browser, label: str) -> None:
    [button] = [
        b for b in browser.find_elements(By.CSS_SELECTOR, "#examples button") if b.text == label
    ]
    button.click()


def test_an_uploaded_trouser_is_classified_mapped_and_reconstructed(browser, service_url, trouser):
    open_page(browser, service_url)
    browser.find_element(By.ID, "file").send_keys(str(trouser))
    wait_for(browser, lambda: prediction(browser) == "Trouser", "the prediction Trouser")
    assert "by MyNet" in text(browser, "#prediction")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    assert len(bars) == 5 and bars[0].text.startswith("Trouser")
    map_image = browser.find_element(By.ID, "map")
    wait_for(browser, lambda: loaded(map_image), "the embedding map")
    assert re.search(r"lands at \(-?\d+\.\d\d, -?\d+\.\d\d\)", text(browser, "#coordinates"))
    wait_for(
        browser,
        lambda: loaded(browser.find_element(By.ID, "recon-output")) == 28,
        "the reconstruction",
    )
    assert "mean squared error" in text(browser, "#recon-metrics")

    Select(browser.find_element(By.ID, "model")).select_by_value("lenet")
    wait_for(browser, lambda: "by LeNet-5" in text(browser, "#prediction"), "LeNet's prediction")
    assert prediction(browser) == "Trouser"
    assert console_errors(browser) == []


def test_the_explanation_shows_which_pixels_decided(browser, service_url):
    open_page(browser, service_url)
    toggle = browser.find_element(By.ID, "explain-toggle")
    figure = browser.find_element(By.ID, "explanation")
    assert not toggle.is_selected() and not figure.is_displayed()
    choose_example(browser, "Ankle boot")
    wait_for(browser, lambda: prediction(browser) == "Ankle boot", "the prediction")
    toggle.click()
    picture = browser.find_element(By.ID, "explanation-image")
    width = round(plots.DPI * plots.EXPLANATION_PANEL[0])
    wait_for(browser, lambda: loaded(picture) == width, "the explanation")
    assert figure.is_displayed() and "MyNet" in picture.get_attribute("alt")
    assert "red patch" in figure.text

    first = picture.get_attribute("src")
    Select(browser.find_element(By.ID, "model")).select_by_value("lenet")
    wait_for(
        browser,
        lambda: "LeNet-5" in picture.get_attribute("alt") and picture.get_attribute("src") != first,
        "LeNet's explanation",
    )
    wait_for(browser, lambda: loaded(picture) == width, "LeNet's explanation to load")
    toggle.click()
    assert not figure.is_displayed()
    assert console_errors(browser) == []


def test_the_models_table_shows_the_cards_test_results(browser, service_url):
    open_page(browser, service_url)
    rows = {
        row.find_element(By.TAG_NAME, "th").text: row.text
        for row in browser.find_elements(By.CSS_SELECTOR, "#model-rows tr")
    }
    assert set(rows) == {"LeNet-5", "MyNet", "VAE"}
    for name, shown in (("lenet", "LeNet-5"), ("mynet", "MyNet")):
        accuracy = json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())["metrics"]["test"][
            "accuracy"
        ]
        assert f"{100 * accuracy:.2f}% accuracy" in rows[shown]
    nats = json.loads((CHECKPOINT_DIR / "vae.json").read_text())["metrics"]["test"]["loss"]
    assert f"{nats:.2f} nats per image" in rows["VAE"]
    assert "Ready on cpu" in text(browser, "#status")
    assert console_errors(browser) == []


def draw(browser, strokes: list[list[tuple[int, int]]]) -> None:
    """Pen strokes on the canvas; points are offsets from its centre in CSS pixels."""
    canvas = browser.find_element(By.ID, "pad")
    for stroke in strokes:
        actions = ActionChains(browser, duration=20)
        actions.move_to_element_with_offset(canvas, *stroke[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            actions.move_by_offset(x1 - x0, y1 - y0)
        actions.release().perform()


def test_drawing_updates_the_prediction(browser, service_url):
    open_page(browser, service_url)
    choose_example(browser, "Trouser")
    wait_for(browser, lambda: prediction(browser) == "Trouser", "the test image's prediction")
    browser.find_element(By.ID, "clear").click()
    # A bag: a wide filled body and a handle.
    body = [[(-100, y), (100, y)] for y in range(-20, 110, 20)]
    handle = [[(-50, -20), (-50, -80), (50, -80), (50, -20)]]
    draw(browser, body + handle)
    wait_for(browser, lambda: prediction(browser) not in ("", "Trouser"), "a new prediction")
    assert text(browser, "#source-note") == "Your drawing."
    assert console_errors(browser) == []


def test_interpolation_shows_the_frames_and_the_slider_moves_through_them(browser, service_url):
    open_page(browser, service_url)
    Select(browser.find_element(By.ID, "start")).select_by_visible_text("Sneaker")
    Select(browser.find_element(By.ID, "end")).select_by_visible_text("Ankle boot")
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("8")
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=slerp]").click()
    browser.find_element(By.CSS_SELECTOR, "#interpolate-form button[type=submit]").click()
    frames = wait_for(
        browser,
        lambda: [
            f for f in browser.find_elements(By.CSS_SELECTOR, "#strip img") if loaded(f) == 28
        ],
        "the frames",
    )
    assert len(frames) == 8
    slider = browser.find_element(By.ID, "frame-slider")
    assert text(browser, "#frame-label") == "1 of 8"
    slider.send_keys(Keys.END)
    assert text(browser, "#frame-label") == "8 of 8"
    assert browser.find_element(By.ID, "frame").get_attribute("src") == frames[-1].get_attribute(
        "src"
    )
    frames[3].click()
    assert text(browser, "#frame-label") == "4 of 8" and slider.get_property("value") == "3"
    assert console_errors(browser) == []


def sample_sources(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#samples img')].map((image) => image.src)"
    )


def test_generate_repeats_a_seed_and_draws_new_ones(browser, service_url):
    open_page(browser, service_url)
    seed = browser.find_element(By.ID, "seed")
    seed.send_keys("7")
    browser.find_element(By.CSS_SELECTOR, "#generate-form button[type=submit]").click()
    first = wait_for(
        browser,
        lambda: len(sample_sources(browser)) == 16 and sample_sources(browser),
        "the samples",
    )
    browser.execute_script("document.querySelector('#samples').replaceChildren()")
    browser.find_element(By.CSS_SELECTOR, "#generate-form button[type=submit]").click()
    again = wait_for(
        browser,
        lambda: len(sample_sources(browser)) == 16 and sample_sources(browser),
        "the samples again",
    )
    assert again == first
    browser.find_element(By.ID, "new-seed").click()
    wait_for(
        browser,
        lambda: seed.get_property("value") != "7" and sample_sources(browser) != first,
        "new samples",
    )
    assert console_errors(browser) == []


def shown_error(browser) -> str:
    box = browser.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


def test_errors_from_the_service_are_readable(browser, service_url, tmp_path):
    open_page(browser, service_url)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    message = wait_for(browser, lambda: shown_error(browser), "a message")
    assert "The service could not use that input." in message
    assert "not an image" in message and "400 invalid_image" in message

    big = tmp_path / "noise.png"
    noise = np.random.default_rng(0).integers(0, 256, (700, 700), dtype=np.uint8)
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > UPLOAD_LIMIT
    browser.find_element(By.ID, "file").send_keys(str(big))
    wait_for(browser, lambda: "too large" in shown_error(browser), "the size message")
    assert "413" in shown_error(browser)

    browser.find_element(By.ID, "error-close").click()
    assert shown_error(browser) == ""
    # The browser reports the refused requests themselves on its console; nothing else.
    unexpected = [e for e in console_errors(browser) if not re.search(r"status of (400|413)", e)]
    assert unexpected == []


def test_the_page_is_small(browser, service_url):
    open_page(browser, service_url)
    entries = browser.execute_script(
        "return [...performance.getEntriesByType('navigation'),"
        " ...performance.getEntriesByType('resource')]"
        ".map(e => [e.name, e.initiatorType, e.encodedBodySize])"
    )
    page = {name: size for name, kind, size in entries if kind != "fetch" or "/static/" in name}
    assert sum(page.values()) < PAGE_BUDGET_BYTES, page
    on_disk = sum(
        f.stat().st_size for f in STATIC.rglob("*") if f.is_file() and "vendor" not in f.parts
    )
    assert on_disk < PAGE_BUDGET_BYTES


def emulate(browser, width: int, height: int) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def test_whole_page_at_desktop_and_phone_width(browser, service_url, screenshot_dir):
    open_page(browser, service_url)
    choose_example(browser, "Ankle boot")
    browser.find_element(By.CSS_SELECTOR, "#interpolate-form button[type=submit]").click()
    browser.find_element(By.ID, "new-seed").click()
    wait_for(browser, lambda: prediction(browser) == "Ankle boot", "the prediction")
    wait_for(browser, lambda: len(sample_sources(browser)) == 16, "the samples")
    wait_for(browser, lambda: loaded(browser.find_element(By.ID, "map")), "the map")
    wait_for(browser, lambda: loaded(browser.find_element(By.ID, "frame")), "the frames")
    wait_for(browser, lambda: not browser.find_elements(By.CSS_SELECTOR, "[aria-busy]"), "quiet")
    try:
        for name, width in (("page_desktop", 1280), ("page_phone", PHONE_WIDTH)):
            # Emulated rather than a resized window: headless Chromium has a minimum width.
            emulate(browser, width, 800)
            height = browser.execute_script("return document.documentElement.scrollHeight")
            emulate(browser, width, height)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name}: {overflow} px wider than the screen"
            browser.save_screenshot(str(screenshot_dir / f"{name}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert console_errors(browser) == []
