"""The web page in a real browser: Debian's Chromium, headless, driven by Selenium, against a real
`videopoet serve` on 127.0.0.1. It types a prompt, submits with the keyboard, waits for the progress bar
to finish, checks that the `<video>` loaded (duration > 0, readyState >= 2) and that the gallery lists the
job, and saves a screenshot (`serve-page.png` in the test's folder; `SERVE_SCREENSHOT=PATH` copies it).

Nothing downloads a browser: without Chromium and its driver the test is skipped with how to get them."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("no Chromium: the browser test needs `apt-get install chromium chromium-driver` (Debian/Ubuntu)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra: pip install -r requirements.lock")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,1300",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_prompt_to_video_in_the_page(browser, live_server: dict, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 180, poll_frequency=0.2)
    browser.get(live_server["url"] + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task option[value=text_to_video_audio]"))
    task = Select(browser.find_element(By.ID, "task"))
    task.select_by_value("video_outpainting")  # a task with a box: its four fields, preset to the task's box
    assert browser.find_element(By.ID, "region").is_displayed() and browser.find_element(By.ID, "upload").is_displayed()
    assert [browser.find_element(By.ID, f"box-{k}").get_attribute("value") for k in ("top", "left", "height", "width")] == ["0.25"] * 2 + ["0.5"] * 2
    task.select_by_value("text_to_video_audio")
    assert not browser.find_element(By.ID, "region").is_displayed()
    prompt = browser.find_element(By.ID, "prompt")
    prompt.click()
    prompt.send_keys("a red circle moving left")
    prompt.send_keys(Keys.CONTROL, Keys.ENTER)  # submits from the keyboard
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "failed")))
    assert browser.find_element(By.ID, "status").text == "done", browser.find_element(By.ID, "error").text
    assert float(browser.find_element(By.ID, "progress").get_attribute("value")) == 1.0
    video = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result video"))
    state = wait.until(lambda d: d.execute_script(
        "const v = arguments[0]; return v.readyState >= 2 && v.duration > 0 ? [v.readyState, v.duration] : null;", video))
    assert state[0] >= 2 and state[1] > 0
    link = browser.find_element(By.CSS_SELECTOR, "#result a[download]")
    job_id = link.get_attribute("href").split("/v1/generations/")[1].split("/")[0]
    item = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#gallery li[data-id='{job_id}'][data-state=done]"))
    assert "a red circle moving left" in item[0].text
    # the screenshot shows the finished page: every video loaded (no loading spinner), the gallery in view
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('video')].every(v => v.readyState >= 2 && v.networkState !== 2);"))
    time.sleep(3)  # Chromium's loading spinner fades out only at the end of its animation cycle, after the load
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1100, min(2400, height + 140))
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
    shot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    if os.environ.get("SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SERVE_SCREENSHOT"])


def test_api_docs_render_offline(browser, live_server: dict) -> None:
    """/docs draws the API with Swagger UI, every script and style coming from the server itself."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = live_server["url"]
    browser.get(url + "/docs")
    paths = WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")] or None)
    assert any("/v1/generations" in p for p in paths)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name);")
    assert resources and all(r.startswith(url + "/") for r in resources), resources


def test_the_page_asks_for_a_key(browser, keyed_server: dict) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    browser.get(keyed_server["url"] + "/")
    field = wait.until(lambda d: d.find_element(By.ID, "key") if d.find_element(By.ID, "key").is_displayed() else None)
    field.send_keys("vp_wrong", Keys.ENTER)
    wait.until(lambda d: "unknown API key" in d.find_element(By.ID, "error").text)
    field.clear()
    field.send_keys(keyed_server["key"], Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task option[value=text_to_video]"))
    assert not browser.find_element(By.ID, "key").is_displayed() and not browser.find_element(By.ID, "error").is_displayed()
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("a blue square moving up", Keys.CONTROL, Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "failed")))
    assert browser.find_element(By.ID, "status").text == "done"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery li[data-state=done]"))
