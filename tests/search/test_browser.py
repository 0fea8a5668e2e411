"""The search page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven
by selenium types a query, uploads an image and follows "more like this"; thumbnails must load. The
screenshot is kept (its path is printed) so a person can look at what the test saw."""

from __future__ import annotations

import shutil

import pytest

from clipctl.search.service import SearchService
from tests.search.live_server import live_server
from tests.search.search_data import indexed_shapes

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _loaded_thumbnails(driver) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll('#results img.thumb')]"
        ".filter(img => img.complete && img.naturalWidth > 0).length"
    )


def test_the_page_searches_and_shows_thumbnails(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _, paths = indexed_shapes(tmp_path, per_class=3, index="shapes")
    wait = WebDriverWait(browser, 60)
    with live_server(SearchService([tmp_path / "shapes"])) as base:
        browser.get(base + "/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#index option"))
        assert "shapes (24 images)" in browser.find_element(By.ID, "index").text
        k = browser.find_element(By.ID, "k")
        k.clear()
        k.send_keys("8")
        browser.find_element(By.ID, "query").send_keys("a red circle", Keys.ENTER)
        wait.until(lambda d: _loaded_thumbnails(d) == 8)
        status = browser.find_element(By.ID, "status").text
        assert status.startswith("8 results for text query"), status
        assert "a+red+circle" in browser.current_url or "a%20red%20circle" in browser.current_url
        screenshot = tmp_path / "search-page.png"
        browser.save_screenshot(str(screenshot))
        print(f"\nscreenshot of the search page: {screenshot}")

        browser.find_element(By.ID, "upload").send_keys(str(paths[5]))
        wait.until(lambda d: paths[5].name in d.find_element(By.ID, "status").text)
        wait.until(lambda d: _loaded_thumbnails(d) == 8)
        first = browser.find_element(By.CSS_SELECTOR, "#results .result .meta").text
        assert paths[5].relative_to(tmp_path / "images").as_posix() in first  # the image finds itself first

        browser.find_element(By.LINK_TEXT, "more like this").click()
        wait.until(lambda d: "row" in d.find_element(By.ID, "status").text)
        assert _loaded_thumbnails(browser) == 8
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    assert screenshot.stat().st_size > 10_000
