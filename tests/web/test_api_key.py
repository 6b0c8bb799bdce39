"""The page against a service that requires an API key: it says so, and works once given one."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from tests.live_service import running_service
from tests.web.conftest import console_errors
from tests.web.test_page import choose_example, prediction, wait_for

KEY = "page-test-key"


@pytest.fixture(scope="module")
def keyed_service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("web-key") / "uvicorn.log"
    with running_service(log, {"FMNIST_API_KEY": KEY}) as service:
        yield service.url


def test_the_page_asks_for_the_key_and_uses_it(browser, keyed_service_url):
    browser.get(f"{keyed_service_url}/")
    error = browser.find_element(By.ID, "error")
    wait_for(browser, lambda: error.is_displayed(), "the message asking for a key")
    assert "needs an API key" in error.text and "401 unauthorized" in error.text
    assert "Ready on" in browser.find_element(By.ID, "status").text  # health needs no key

    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#model-rows th")) == 3,
        "the models",
    )
    assert not error.is_displayed()
    choose_example(browser, "Trouser")
    wait_for(browser, lambda: prediction(browser) == "Trouser", "the prediction")
    assert browser.execute_script("return sessionStorage.getItem('fmnist-api-key')") == KEY

    # A reload keeps the key for this tab.
    browser.refresh()
    wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#model-rows th")) == 3,
        "the models again",
    )
    assert [e for e in console_errors(browser) if not re.search(r"status of 401", e)] == []
    browser.execute_script("sessionStorage.clear()")
