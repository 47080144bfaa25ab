"""Headless Chromium driven through Selenium for the tests of the web pages (the prediction page, the
console): what a person sees, the console errors the page logged, and every host it asked for something.

Debian's `chromium` and `chromium-driver` (installed by scripts/setup.sh where missing); without them
the browser tests skip with one line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Kept after the run (git-ignored): screenshots of each page, desktop and phone width.
SCREENSHOTS = Path(__file__).resolve().parent.parent / "out" / "screenshots"
DESKTOP = (1280, 900)
PHONE = (390, 844)

# Without the background-networking flags Chromium reaches out to its own services at start-up
# (component updates, sync, safe browsing): on a closed network that shows as refused connections.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
)


def _executables() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium with a fresh profile and its performance log on; skips the test when no
    browser can be had."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser tests: selenium is not installed (pip install -e '.[dev]')")
    found = _executables()
    if found is None:
        pytest.skip("browser tests: chromium and chromedriver not found (scripts/install-browser.sh)")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="crucible-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    """The page's console messages of level SEVERE since the last call (the log is drained)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """Every URL the browser sent a request for since the last call (the performance log is drained)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def other_hosts(urls: list[str], base_url: str) -> list[str]:
    """The URLs not on the page's own host (data: and blob: URLs stay in the page)."""
    own = urlsplit(base_url).netloc
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != own
    ]


def _viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def screenshot(driver, name: str) -> Path:
    """The whole page as it is, at desktop and at phone width: out/screenshots/<name>-desktop.png and
    <name>-390.png. The viewport is back at desktop size afterwards."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for suffix, (width, height) in (("desktop", DESKTOP), ("390", PHONE)):
        _viewport(driver, width, height)
        full_height = driver.execute_script("return document.documentElement.scrollHeight")
        _viewport(driver, width, min(max(height, full_height), 4000))
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-{suffix}.png"))
    _viewport(driver, *DESKTOP)
    return SCREENSHOTS


def at_phone_width(driver) -> None:
    """The viewport of a 390 px wide phone, until `at_desktop_width`."""
    _viewport(driver, *PHONE)


def at_desktop_width(driver) -> None:
    _viewport(driver, *DESKTOP)


def horizontal_overflow(driver) -> int:
    """How many CSS pixels the page is wider than the window (0 when nothing sticks out)."""
    return int(
        driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


@contextmanager
def served(app) -> Iterator[str]:
    """`app` served by uvicorn on 127.0.0.1 (a free port) in a thread; its base URL. Leaving the block
    stops it, so the same page then finds its server unreachable."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
