"""The web page in a real browser: Debian's Chromium, headless, driven by Selenium, against a real
`videopoet serve` on 127.0.0.1. It types a prompt, submits with the keyboard, waits for the progress bar
to finish, checks that the `<video>` loaded (duration > 0, readyState >= 2) and that the gallery lists the
job, and saves a screenshot (`serve-page.png` in the test's folder; `SERVE_SCREENSHOT=PATH` copies it).

Nothing downloads a browser: without Chromium and its driver the test is skipped with how to get them."""

from __future__ import annotations

import os
import shutil
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
    Select(browser.find_element(By.ID, "task")).select_by_value("text_to_video_audio")
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
    shot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    if os.environ.get("SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SERVE_SCREENSHOT"])


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
