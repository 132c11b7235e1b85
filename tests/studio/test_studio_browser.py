"""The studio end to end in headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
upload an entity photo, draw its path with real mouse events, generate with 2 steps on the embedded
model, download a valid track.json; a bad upload shows its error in the page.

``make test`` installs chromium (scripts/install_browser.sh) and the studio extra, so this test does
not skip there. ``TORA2_STUDIO_SHOTS=docs`` saves the screenshots used in docs/studio.md.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAR = REPO / "examples" / "entities" / "yellow_star.png"
REQUIRED = os.environ.get("TORA2_REQUIRE_BROWSER") == "1"  # set by `make test`: never skip there


def _need(ok: bool, what: str) -> None:
    if not ok:
        (pytest.fail if REQUIRED else pytest.skip)(f"{what} (make test installs it)", **({} if REQUIRED else {"allow_module_level": True}))


try:
    import gradio  # noqa: F401
    from selenium import webdriver
except ImportError:
    webdriver = None
_need(webdriver is not None, "gradio and selenium are missing: pip install -e '.[test,studio]'")
_need(bool(shutil.which("chromium") and shutil.which("chromedriver")),
      "chromium/chromedriver missing: scripts/install_browser.sh installs them")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORA2_CACHE": str(tmp_path_factory.mktemp("cache")),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "studio", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"tora2 studio exited: {proc.stdout.read()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("tora2 studio did not answer within 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    options = Options()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    folder = os.environ.get("TORA2_STUDIO_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"studio-{name}.png"))


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def test_upload_draw_generate_download(studio, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(studio)
    canvas = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "canvas.studio-paths")))

    # 1. an entity photo: segmented crop, mask, kind and method shown at once
    browser.find_element(By.CSS_SELECTOR, "#photo-1 input[type=file]").send_keys(str(STAR))
    wait.until(lambda d: "kind:" in text_of(d, "#kind-1"))
    assert "segmentation:" in text_of(browser, "#kind-1")
    browser.find_element(By.CSS_SELECTOR, "#text-1 textarea, #text-1 input").send_keys("a yellow star")

    # 2. its path, with real mouse events: three clicks, then drag the middle point
    actions = ActionChains(browser)
    for dx, dy in ((-160, 40), (0, -80), (160, 40)):
        actions.move_to_element_with_offset(canvas, dx, dy).click()
    actions.move_to_element_with_offset(canvas, 0, -80).click_and_hold().move_by_offset(20, -40).release().perform()
    wait.until(lambda d: "✓ 1 path(s)" in text_of(d, "#path-status"))
    browser.find_element(By.CSS_SELECTOR, "#preview").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-paths img"))
    shot(browser, "draw")

    # 3. prompt with the phrase highlighted, 2 steps, generate
    browser.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys("a yellow star moves across the sky")
    steps = browser.find_element(By.CSS_SELECTOR, "#steps input")
    steps.clear()
    steps.send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    WebDriverWait(browser, 300).until(lambda d: "generated with" in text_of(d, "#result"))
    assert browser.find_elements(By.CSS_SELECTOR, "#video video")
    links = {a.get_attribute("href"): a.text for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    assert links, browser.find_element(By.CSS_SELECTOR, "#downloads").get_attribute("innerHTML")[:3000]
    track_url = next((href for href in links if href.split("?")[0].endswith("track.json")), None)
    assert track_url, links
    assert any(name.endswith(".mp4") for name in links) and any(name.endswith("job.jsonl") for name in links)
    data = json.loads(urllib.request.urlopen(track_url, timeout=30).read())
    from tora2.trajectory import tracks_from_json

    (track,) = tracks_from_json(data, num_frames=9, height=64, width=64)
    assert track.visible.all() and track.points[0, 0] < track.points[-1, 0]  # drawn left to right
    shot(browser, "result")

    # 4. the downloaded track.json loads back onto the canvas: one point per frame
    saved = tmp_path / "track.json"
    saved.write_text(json.dumps(data))
    browser.find_element(By.CSS_SELECTOR, "#load input[type=file]").send_keys(str(saved))
    wait.until(lambda d: "a yellow star (9)" in text_of(d, "#canvas .studio-entities"))

    # 5. a bad upload: the error shows in the page
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    next(t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text.strip() == "entity 2").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-2 input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#photo-2 input[type=file]").send_keys(str(broken))
    wait.until(lambda d: "is not an image this studio can read" in d.page_source)
    shot(browser, "error")
