"""The console over a local runs/ directory in headless Chromium: the pages a person walks through, the
table's filter and sorting, comparing runs, and a page that follows a search as it runs, without
reloading; no console errors, nothing asked of other hosts, nothing wider than a 390 px phone."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from crucible.console.app import create_app
from crucible.console.local import LocalSource
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
from tests.console.conftest import FAILED_RUN, SEARCH

pytest.importorskip("selenium", reason="browser tests: selenium is not installed")


@pytest.fixture(scope="module")
def live_runs(runs_dir: Path, tmp_path_factory) -> Path:
    """A copy of the runs the console may change under its feet (the live-refresh test does)."""
    copy = tmp_path_factory.mktemp("console-live") / "runs"
    shutil.copytree(runs_dir, copy)
    return copy


@pytest.fixture(scope="module")
def console_url(live_runs: Path):
    with served(create_app(LocalSource(live_runs), refresh_seconds=0.3)) as url:
        yield url


@pytest.fixture(scope="module")
def chromium_of_module():
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(chromium_of_module, console_url):
    requested_urls(chromium_of_module)
    console_errors(chromium_of_module)
    yield chromium_of_module
    assert console_errors(chromium_of_module) == []
    assert other_hosts(requested_urls(chromium_of_module), console_url) == []


def wait_for(driver, condition, seconds: float = 20):
    """Until `condition()` is true; a live page may replace what a condition looks at while it looks."""
    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, seconds, poll_frequency=0.05, ignored_exceptions=ignored).until(
        lambda _: condition()
    )


def row_text(driver, number: int) -> str:
    return driver.find_element(By.XPATH, f"//tr[td[text()='{number}']]").text


def main_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "main").text


def row_names(driver) -> list[str]:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "table.runs tbody td:nth-child(2)")]


def fits_a_phone(driver) -> bool:
    at_phone_width(driver)
    overflow = horizontal_overflow(driver)
    at_desktop_width(driver)
    return overflow == 0


def test_the_runs_table_filters_sorts_and_explains_failed_gates(browser, console_url):
    browser.get(f"{console_url}runs")
    text = main_text(browser)
    assert "Namespace local" in text
    failed_row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{FAILED_RUN}']]").text
    assert "\u2717 crossValidation" in failed_row and "needs \u2265 0.999" in failed_row
    assert len(row_names(browser)) == 5
    screenshot(browser, "console-runs")
    assert fits_a_phone(browser)

    browser.find_element(By.CSS_SELECTOR, "a.sort[href*='sort=name']").click()
    wait_for(browser, lambda: "sort=name" in browser.current_url)
    names = row_names(browser)
    assert names == sorted(names)
    browser.find_element(By.CSS_SELECTOR, "a.sort[href*='sort=name']").click()
    wait_for(browser, lambda: row_names(browser) == sorted(names, reverse=True))

    field = browser.find_element(By.ID, "label")
    field.send_keys(f"crucible.dev/tuning-job={SEARCH}")
    field.submit()
    wait_for(browser, lambda: "label=" in browser.current_url)
    assert sorted(row_names(browser)) == [f"{SEARCH}-trial-00{i}" for i in range(3)]


def test_a_run_shows_its_gates_folds_report_and_card(browser, console_url):
    browser.get(f"{console_url}runs/local/digits-tiny")
    text = main_text(browser)
    for expected in (
        "\u2713 debug",
        "overfitOneBatch",
        "\u2713 crossValidation",
        "fold 3",
        "mean \u00b1 std",
        "macroF1",
        "Dataset fingerprint",
        "Architecture\ntiny_cnn",
    ):
        assert expected in text, expected
    threshold = browser.find_element(By.XPATH, "//tr[td[text()='mean']]").text
    assert "\u2265 0" in threshold and "\u2713 passed" in threshold  # minMean 0: the baseline gate judges
    report = browser.find_element(By.CSS_SELECTOR, "img.report")
    wait_for(browser, lambda: browser.execute_script("return arguments[0].naturalWidth", report) > 100)
    screenshot(browser, "console-run")
    assert fits_a_phone(browser)


def test_runs_are_compared_side_by_side_and_unfair_comparisons_refused(browser, console_url):
    browser.get(f"{console_url}runs?label=crucible.dev/tuning-job")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=run]")[:2]:
        box.click()
    browser.find_element(By.XPATH, "//button[text()='Compare selected runs']").click()
    wait_for(browser, lambda: "/compare" in browser.current_url)
    text = main_text(browser)
    assert "Compare runs" in text and "accuracy" in text and "overfitting · gap" in text
    assert "Differences are from the first run." in text
    # Per class, both runs and the difference; McNemar's test on the shared held-out images.
    assert "Per class" in text and "Significance on the shared held-out set" in text
    first_class = browser.find_element(By.CSS_SELECTOR, "table.per-class tbody tr").text
    assert re.match(
        r"0\n\d+ images\nF1 [\d.]+\nPrecision [\d.]+\nRecall [\d.]+\nF1 [\d.]+ \([+-]?[\d.]+\)", first_class
    )
    tests = browser.find_element(By.CSS_SELECTOR, "ul.tests").text
    pattern = rf"{SEARCH}-trial-00\d vs {SEARCH}-trial-00\d: on \d+ shared held-out images, \d+ right only by"
    assert re.match(pattern, tests) and "p = " in tests, tests
    screenshot(browser, "console-compare")
    assert fits_a_phone(browser)

    browser.get(f"{console_url}compare?run=local/digits-tiny&run=local/{FAILED_RUN}")
    refusal = browser.find_element(By.CSS_SELECTOR, ".refusal").text
    assert "These runs cannot be compared fairly" in refusal and "different data" in refusal
    console_errors(browser)  # the 409 itself is logged by the browser; that is this page's answer


def test_a_tuning_job_shows_trials_best_so_far_and_the_study_plots(browser, console_url):
    browser.get(f"{console_url}tuningjobs")
    browser.find_element(By.LINK_TEXT, SEARCH).click()
    wait_for(browser, lambda: "Best so far" in main_text(browser))
    text = main_text(browser)
    assert "3 complete" in text and "maximize valBalancedAccuracy" in text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart circle.dot")) == 3
    for plot in browser.find_elements(By.CSS_SELECTOR, "img.plot"):
        assert browser.execute_script("return arguments[0].naturalWidth", plot) > 100
    screenshot(browser, "console-tuningjob")
    assert fits_a_phone(browser)
    browser.find_element(By.LINK_TEXT, f"{SEARCH}-trial-001").click()
    wait_for(browser, lambda: f"trial 1 of TuningJob {SEARCH}" in main_text(browser))


def test_a_running_search_is_followed_without_reloading_the_page(browser, console_url, live_runs):
    search = live_runs / SEARCH
    result = (search / "result.json").read_text()
    trial = (search / "trials" / "002" / "trial.json").read_text()
    # As a search looks while its third trial trains: the trial has a directory and no record yet.
    (search / "result.json").unlink()
    (search / "trials" / "002" / "trial.json").unlink()
    (search / "trials" / "002" / "result.json").rename(search / "trials" / "002" / "result.json.done")
    # The runs page refreshes while the trial trains (its age ticks), but never under someone typing.
    browser.get(f"{console_url}runs")
    assert browser.find_element(By.TAG_NAME, "main").get_attribute("data-live") == "true"
    # Focus first, in one step: until the field has the focus a refresh may replace it at any moment.
    browser.execute_script("document.getElementById('label').focus()")
    browser.switch_to.active_element.send_keys("team=")
    time.sleep(1.5)
    assert browser.find_element(By.ID, "label").get_attribute("value") == "team="
    assert browser.switch_to.active_element.get_attribute("id") == "label"

    browser.get(f"{console_url}tuningjobs/local/{SEARCH}")
    assert "Running" in browser.find_element(By.TAG_NAME, "h1").text
    wait_for(browser, lambda: "RUNNING" in row_text(browser, 2))
    browser.execute_script("window.notReloaded = true")

    (search / "trials" / "002" / "result.json.done").rename(search / "trials" / "002" / "result.json")
    (search / "trials" / "002" / "trial.json").write_text(trial)
    (search / "result.json").write_text(result)
    wait_for(browser, lambda: "Succeeded" in browser.find_element(By.TAG_NAME, "h1").text)
    wait_for(browser, lambda: "COMPLETE" in row_text(browser, 2))
    assert browser.execute_script("return window.notReloaded") is True
    assert json.loads(browser.execute_script("return document.querySelector('main').dataset.refreshes")) >= 1


def test_the_console_api_docs_render_offline(browser, console_url):
    browser.get(f"{console_url}docs")
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    assert "/api/{plural}" in {
        e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
