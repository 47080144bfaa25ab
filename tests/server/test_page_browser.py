"""The prediction page and the API docs in headless Chromium, as a person uses them: several files at
once, a file that is no image, one too large, a server that went away; what the page says, and that it
logged no error and asked no other host for anything."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from crucible.server.app import create_app
from crucible.server.repository import ModelRepository
from crucible.server.settings import CaptureSettings, ServerSettings
from tests.browser import (
    at_desktop_width,
    at_phone_width,
    chromium,
    console_errors,
    horizontal_overflow,
    other_hosts,
    requested_urls,
    screenshot,
    served,
)
from tests.server.helpers import png_bytes

pytest.importorskip("selenium", reason="browser tests: selenium is not installed")

LIMIT = 256 * 1024  # small, so that a too-large file is quick to make


@pytest.fixture(scope="module")
def chromium_of_module():
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(chromium_of_module):
    """The module's browser, its logs drained: each test sees only its own requests and errors."""
    requested_urls(chromium_of_module)
    console_errors(chromium_of_module)
    return chromium_of_module


@pytest.fixture(scope="module")
def page_url(digits_model):
    with served(create_app(ModelRepository([digits_model]), ServerSettings(max_body_bytes=LIMIT))) as url:
        yield url


@pytest.fixture
def uploads(tmp_path: Path, digit_pixels) -> dict[str, Path]:
    pixels, labels = digit_pixels
    files = {}
    for digit in (3, 7, 0):
        files[f"digit-{digit}.png"] = png_bytes(pixels[list(labels).index(digit)])
    files["notes.txt"] = b"these are notes, not a picture\n"
    files["broken.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # a PNG signature and nothing decodable
    files["huge.png"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * (LIMIT + 1)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def wait_for(driver, condition, seconds: float = 15):
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda _: condition())


def cards(driver) -> dict[str, str]:
    return {
        card.get_attribute("data-file"): card.text for card in driver.find_elements(By.CSS_SELECTOR, ".card")
    }


def settled(driver) -> bool:
    found = driver.find_elements(By.CSS_SELECTOR, ".card")
    return bool(found) and all(card.get_attribute("aria-busy") == "false" for card in found)


def unexpected_errors(driver, expected: tuple[str, ...] = ()) -> list[str]:
    return [message for message in console_errors(driver) if not any(text in message for text in expected)]


def test_several_files_get_one_card_each_with_a_plain_answer(browser, page_url, uploads):
    browser.get(page_url)
    assert (
        "Upload a picture of 0, 1, 2, 3, 4, 5, 6, 7, 8 or 9 (10 classes)"
        in browser.find_element(By.ID, "hint").text
    )
    assert browser.find_element(By.CSS_SELECTOR, "#results").get_attribute("aria-live") == "polite"
    # A slow network, so that the waiting state can be seen.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 700, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    browser.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in uploads.values()))
    wait_for(browser, lambda: "Predicting…" in cards(browser).get("digit-3.png", ""), 5)
    wait_for(browser, lambda: settled(browser))
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    shown = cards(browser)
    assert list(shown) == list(uploads)
    for digit in (3, 7, 0):
        name = f"digit-{digit}.png"
        expected = httpx.post(
            f"{page_url}predict", files={"files": (name, uploads[name].read_bytes())}
        ).json()
        best = expected["predictions"][0]
        text = shown[name]
        headline = browser.find_element(By.CSS_SELECTOR, f'.card[data-file="{name}"] .headline').text
        assert re.fullmatch(rf"{best['label']} — (\d+\.\d %|>99\.9 %)", headline), headline
        assert "Class Score" in text.replace("CLASS SCORE", "Class Score")
        assert len(browser.find_elements(By.CSS_SELECTOR, f'.card[data-file="{name}"] tbody tr')) == 5
    assert "“notes.txt” is not an image. Accepted: PNG, JPEG." in shown["notes.txt"]
    assert "“huge.png” is too large (0.3 MB): the limit is 256 KB." in shown["huge.png"]
    assert "“broken.png” is not an image the model can read. Accepted: PNG, JPEG." in shown["broken.png"]
    # Undecodable files get a placeholder, never a broken image.
    for name in ("notes.txt", "broken.png", "huge.png"):
        thumb = browser.find_element(By.CSS_SELECTOR, f'.card[data-file="{name}"] .thumb')
        assert thumb.text == "NO PREVIEW" or thumb.text.lower() == "no preview"
        assert not thumb.find_elements(By.TAG_NAME, "img")
    decoded = browser.find_elements(By.CSS_SELECTOR, '.card[data-file="digit-3.png"] .thumb img')
    assert decoded and browser.execute_script("return arguments[0].naturalWidth", decoded[0]) == 16

    # Scores too small to print as a percentage read "<0.1 %".
    scores = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "td.num")]
    assert all(re.fullmatch(r"<0\.1 %|>99\.9 %|\d+\.\d %", score) for score in scores), scores
    screenshot(browser, "predict")
    at_phone_width(browser)
    assert horizontal_overflow(browser) == 0
    at_desktop_width(browser)

    # A new choice clears the previous results at once. (The driver adds to a multiple file input's
    # list; a person's new choice replaces it, as clearing first does.)
    chooser = browser.find_element(By.ID, "files")
    chooser.clear()
    chooser.send_keys(str(uploads["digit-7.png"]))
    wait_for(browser, lambda: list(cards(browser)) == ["digit-7.png"] and settled(browser))

    assert unexpected_errors(browser, ("status of 415",)) == []
    assert other_hosts(requested_urls(browser), page_url) == []


def test_images_dropped_on_the_page_are_predicted(browser, page_url, uploads):
    browser.get(page_url)
    png = list(uploads["digit-0.png"].read_bytes())
    # What the browser does when a file is dropped from the desktop: a drop event carrying the file.
    browser.execute_script(
        """
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(arguments[0])], "dropped.png", {type: "image/png"}));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        """,
        png,
    )
    wait_for(browser, lambda: settled(browser))
    assert list(cards(browser)) == ["dropped.png"]
    assert browser.find_element(By.CSS_SELECTOR, ".headline").text.startswith("0 — ")
    assert "dragging" not in browser.find_element(By.ID, "drop").get_attribute("class")
    assert unexpected_errors(browser) == []


def test_the_page_is_usable_from_the_keyboard(browser, page_url):
    browser.get(page_url)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "files"
    label = browser.find_element(By.CSS_SELECTOR, "label[for=files]")
    assert "Choose images or drop them here" in label.text
    outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", label)
    assert outline == "solid"  # the drop zone shows that it has the focus
    assert (
        browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href").endswith("/favicon.svg")
    )
    assert unexpected_errors(browser) == []


def test_with_capture_on_the_page_says_so_and_a_prediction_can_be_corrected_from_the_keyboard(
    browser, digits_model, uploads, tmp_path
):
    settings = ServerSettings(capture=CaptureSettings(destination=str(tmp_path / "capture")))
    with served(create_app(ModelRepository([digits_model]), settings)) as url:
        browser.get(url)
        notice = browser.find_element(By.ID, "capture-notice").text
        assert notice.startswith("Images you send are stored to improve the model")
        browser.find_element(By.ID, "files").send_keys(str(uploads["digit-3.png"]))
        wait_for(browser, lambda: settled(browser))
        select = browser.find_element(By.CSS_SELECTOR, ".card .correct select")
        predicted = browser.find_element(By.CSS_SELECTOR, ".headline").text.split(" — ")[0]
        assert Select(select).first_selected_option.text == predicted  # the model's answer, to confirm or fix
        request_id = select.get_attribute("id").removeprefix("correct-")
        # Keyboard only: Tab from the file chooser reaches the select, then the Send button.
        browser.execute_script("arguments[0].focus()", browser.find_element(By.ID, "files"))
        ActionChains(browser).send_keys(Keys.TAB).perform()
        assert browser.switch_to.active_element == select
        label_text = browser.find_element(By.CSS_SELECTOR, f'label[for="correct-{request_id}"]').text
        assert label_text == "Correct this:"
        select.send_keys("8")
        ActionChains(browser).send_keys(Keys.TAB).perform()
        send = browser.switch_to.active_element
        assert send.text == "Send"
        send.send_keys(Keys.ENTER)
        wait_for(
            browser, lambda: "Thank you" in browser.find_element(By.CSS_SELECTOR, ".correct output").text
        )
        assert browser.find_element(By.CSS_SELECTOR, ".correct output").text == "Thank you: stored as “8”."
        screenshot(browser, "predict-capture")
        at_phone_width(browser)
        assert horizontal_overflow(browser) == 0
        at_desktop_width(browser)
        assert unexpected_errors(browser) == []
        assert other_hosts(requested_urls(browser), url) == []
    assert (tmp_path / "capture" / "labelled" / "8" / f"{request_id}.png").is_file()


def test_an_unreachable_server_is_said_plainly(browser, digits_model, uploads):
    with served(create_app(ModelRepository([digits_model]))) as url:
        browser.get(url)
    browser.find_element(By.ID, "files").send_keys(str(uploads["digit-3.png"]))
    wait_for(browser, lambda: settled(browser))
    assert cards(browser)["digit-3.png"].endswith(
        "The server cannot be reached. Check that it is running and try again."
    )
    assert unexpected_errors(browser, ("ERR_CONNECTION_REFUSED",)) == []
    assert other_hosts(requested_urls(browser), url) == []


def test_the_api_docs_render_offline(browser, page_url):
    browser.get(f"{page_url}docs")
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/v2/models/{name}/infer"} <= {path.replace("\u200b", "") for path in paths}
    screenshot(browser, "docs")
    browser.get(f"{page_url}redoc")
    wait_for(browser, lambda: "Open Inference Protocol v2" in browser.find_element(By.TAG_NAME, "body").text)
    assert unexpected_errors(browser) == []
    assert other_hosts(requested_urls(browser), page_url) == []
