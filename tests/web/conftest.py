"""A real headless Chromium, driven by Selenium, against real service processes.

Needs Debian's `chromium` and `chromium-driver` (`make system-deps` installs them as root) and
the `selenium` package (the `dev` extra); without them every test here is skipped, saying why.
Chromium resolves no host name but the loopback address, so the page cannot load anything from
elsewhere, and the tests check from Chromium's network log that it did not try.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.live_service import running_service

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
)
from selenium.webdriver.chrome.service import Service  # noqa: E402

WINDOW = (1280, 1800)
WAIT_S = 60.0  # model calls on a small, shared machine
UPLOAD_LIMIT = 300_000


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "browser tests need Chromium and chromedriver: "
            "apt-get install chromium chromium-driver (or `make system-deps` as root)"
        )
    return chromium, driver


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers and root users have no user namespaces for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_script_timeout(WAIT_S)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="session")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service with a 300 kB upload limit, so the page can be shown a 413."""
    log = tmp_path_factory.mktemp("web") / "uvicorn.log"
    with running_service(log, {"FMNIST_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}) as service:
        yield service.url


def console_errors(browser: webdriver.Chrome) -> list[str]:
    """The console's errors since the last call (reading the log empties it)."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(browser: webdriver.Chrome) -> list[str]:
    """Every URL the pages asked for since the last call, from Chromium's network log."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def off_machine(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine: neither loopback nor data: / blob: URLs."""
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != "127.0.0.1"
    ]


@pytest.fixture(autouse=True)
def nothing_leaves_the_machine(browser: webdriver.Chrome) -> Iterator[None]:
    """Each test starts with empty logs, and its pages request nothing from elsewhere."""
    requested_urls(browser)
    console_errors(browser)
    yield
    assert off_machine(requested_urls(browser)) == []


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $FMNIST_SCREENSHOT_DIR (e.g. `reports`, for the README), else a
    temporary folder."""
    chosen = os.environ.get("FMNIST_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
