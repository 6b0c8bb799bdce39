"""/docs (Swagger UI) and /redoc render in a real Chromium with no network but the service
(conftest checks that they request nothing from elsewhere)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.web.conftest import WAIT_S, console_errors

OPERATIONS = {
    ("post", "/classify"),
    ("post", "/explain"),
    ("post", "/embed"),
    ("post", "/reconstruct"),
    ("post", "/interpolate"),
    ("post", "/generate"),
    ("get", "/models"),
    ("get", "/models/{name}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/versions/{version}"),
    ("get", "/v2/models/{name}/ready"),
    ("get", "/v2/models/{name}/versions/{version}/ready"),
    ("post", "/v2/models/{name}/infer"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
    ("post", "/v2/repository/index"),
    ("post", "/v2/repository/models/{name}/load"),
    ("post", "/v2/repository/models/{name}/unload"),
}


def shown_operations(browser) -> set[tuple[str, str]]:
    return {
        (
            block.get_attribute("class").split("opblock-")[-1].split()[0],
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }


def test_swagger_ui_lists_every_operation_offline(browser, service_url):
    browser.get(f"{service_url}/docs")
    WebDriverWait(browser, WAIT_S).until(
        lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(OPERATIONS)
    )
    assert shown_operations(browser) == OPERATIONS
    assert (
        "Fashion-MNIST model service" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    )
    assert console_errors(browser) == []


def test_redoc_renders_offline(browser, service_url):
    browser.get(f"{service_url}/redoc")
    WebDriverWait(browser, WAIT_S).until(
        lambda _: "Classify garments" in browser.find_element(By.TAG_NAME, "body").text
    )
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Morph one garment into another" in body and "Sample new garments" in body
    assert console_errors(browser) == []


def test_the_page_links_to_both(browser, service_url):
    browser.get(f"{service_url}/")
    links = {
        a.get_attribute("pathname") for a in browser.find_elements(By.CSS_SELECTOR, "header a")
    }
    assert {"/docs", "/redoc"} <= links
