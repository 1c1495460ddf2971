"""`unsamv2 app` in a real browser: Debian's chromium, headless, driven by selenium (no browser download).

The app runs as the user starts it (`python -m unsamv2.cli app ...` on 127.0.0.1, a random-weight tiny
checkpoint) in an empty working directory with an empty HOME. The test uploads an image, clicks on it, moves the
granularity slider with the keyboard and checks that the displayed mask is the predictor's mask for that g (the
downloaded PNG exactly; the JPEG preview within compression noise, and closer to it than to the previous g's), then
segments the whole image and tracks a clicked object through three frames. Screenshots of the three tabs go to
``$UNSAMV2_APP_SCREENSHOTS`` (the README's ``docs/app_*.png``: ``UNSAMV2_APP_SCREENSHOTS=docs``), else to a
temporary folder. After SIGTERM the server has removed its temporary folder and written nothing anywhere else.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unsamv2.app.render import draw_clicks
from unsamv2.core.constants import GRANULARITY_GRID
from unsamv2.io.masks import decode_rle
from unsamv2.model.build import build_unsamv2
from unsamv2.model.figures import overlay_mask, overlay_masks
from unsamv2.model.predictor import UnSAMv2ImagePredictor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IMAGE_SIZE = 256  # model input: fast on CPU (the checkpoint itself is the 1024-px format)
TARGET = (250, 180)  # where the test clicks (x, y) in the 512×512 astronaut
# SAM-2's own threshold: with random weights the official -1 selects the whole image at every g; at 0 the masks
# cover about an eighth of it and differ between granularities.
MASK_THRESHOLD = 0.0
START_G = 0.5  # the slider's initial value (unsamv2.app.ui.DEFAULT_GRANULARITY)
TIMEOUT = 60.0


def _skip_reason() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    for module in ("selenium", "gradio"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev,app]')"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _wait(what: str, condition: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    from skimage import data

    image = np.ascontiguousarray(data.astronaut())
    path = tmp_path_factory.mktemp("browser_upload") / "astronaut.png"
    Image.fromarray(image).save(path)
    return image, path


@pytest.fixture(scope="module")
def reference(checkpoint_factory: Callable[..., Path], astronaut: tuple[np.ndarray, Path]
              ) -> UnSAMv2ImagePredictor:
    """The predictor the app's masks must match (same checkpoint, model input and threshold)."""
    model = build_unsamv2(checkpoint=checkpoint_factory("unsamv2"), device="cpu", image_size=IMAGE_SIZE)
    predictor = UnSAMv2ImagePredictor(model, mask_threshold=MASK_THRESHOLD)
    predictor.set_image(astronaut[0])
    return predictor


@pytest.fixture(scope="module")
def server(checkpoint_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """The app, started (not waited for: the tests build their reference model meanwhile; ``ready()`` waits)."""
    root = tmp_path_factory.mktemp("server")
    cwd, home = root / "cwd", root / "home"
    cwd.mkdir()
    home.mkdir()
    port = _free_port()
    log = root / "server.log"
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unsamv2.cli", "app", "--checkpoint", str(checkpoint_factory("unsamv2")),
           "--image-size", str(IMAGE_SIZE), "--device", "cpu", "--port", str(port), "--threads", "1",
           "--mask-threshold", str(MASK_THRESHOLD), "--max-frames", "5"]
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    info: dict[str, Any] = {"url": url, "cwd": cwd, "home": home, "log": log, "proc": proc}

    def up() -> bool:
        assert proc.poll() is None, f"the app exited early:\n{log.read_text()}"
        try:
            return _fetch(url) is not None
        except OSError:
            return False

    def ready() -> None:
        if "workdir" not in info:
            _wait("the app to serve", up, timeout=120)
            match = re.search(r"temporary folder (\S+)\)", log.read_text())
            assert match, log.read_text()
            info["workdir"] = Path(match.group(1))

    info["ready"] = ready
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def driver(server: dict[str, Any]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        server["ready"]()
        browser.get(server["url"])
        yield browser
    finally:
        browser.quit()


def _screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("UNSAMV2_APP_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return _wait(selector, lambda: (driver.find_elements(By.CSS_SELECTOR, selector) or [None])[0])


def _text(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def _wait_text(driver: Any, selector: str, pattern: str) -> re.Match[str]:
    return _wait(f"{selector} to match {pattern!r}", lambda: re.search(pattern, _text(driver, selector)))


def _shown_image(driver: Any, selector: str, previous: str | None = None) -> tuple[str, np.ndarray]:
    """(src, RGB array) of the image an element shows, once its src differs from ``previous``."""
    from selenium.webdriver.common.by import By

    def src() -> str | None:
        imgs = driver.find_elements(By.CSS_SELECTOR, f"{selector} img")
        value = imgs[0].get_attribute("src") if imgs else None
        return value if value and value != previous else None

    url = _wait(f"an image in {selector}", src)
    return url, np.asarray(Image.open(io.BytesIO(_fetch(url))).convert("RGB"))


def _click_pixel(driver: Any, selector: str, x: float, y: float) -> None:
    """Click the displayed image at image pixel (x, y), mapping as Gradio maps clicks back to pixels."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    img = _css(driver, f"{selector} img")
    _wait(f"{selector} to load", lambda: driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0;", img))
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];", img)
    left, top, width, height, nw, nh = box
    scale = min(width / nw, height / nh, 1.0)
    pad_x, pad_y = (width - nw * scale) / 2, (height - nh * scale) / 2
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(round(left + pad_x + (x + 0.25) * scale),
                                            round(top + pad_y + (y + 0.25) * scale))
    actions.pointer_action.click()
    actions.perform()


def _upload(driver: Any, selector: str, *paths: Path) -> None:
    _css(driver, f"{selector} input[type=file]").send_keys("\n".join(str(p) for p in paths))


def _tab(driver: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    _wait(f"tab {name}", lambda: driver.find_elements(By.XPATH, f"//button[@role='tab'][contains(., '{name}')]"))[
        0].click()


def _download_links(driver: Any, selector: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, f"{selector} a[href]")]
    return {urllib.parse.unquote(h.rsplit("/", 1)[-1]): h for h in hrefs if h and "/file=" in h}


def _error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def _expected_view(image: np.ndarray, mask: np.ndarray, click: tuple[float, float]) -> np.ndarray:
    return draw_clicks(overlay_mask(image, mask), [click], [1])


def test_image_tab_click_slider_download(server: dict[str, Any], reference: UnSAMv2ImagePredictor, driver: Any,
                                        astronaut: tuple[np.ndarray, Path],
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    image, path = astronaut
    predictor = reference
    _wait_text(driver, "#model-notice", r"^UnSAMv2 checkpoint \(SAM-2\.1 tiny\)\.$")

    # A bad upload: one line in the page, naming the file, no traceback.
    bad = tmp_path_factory.mktemp("bad_upload") / "notes.png"
    bad.write_text("not an image")
    _upload(driver, "#image-upload", bad)
    _wait("the error message", lambda: "notes.png: not a readable image" in driver.page_source)
    assert "Traceback" not in driver.page_source
    _css(driver, ".toast-close").click()
    _css(driver, "#image-upload button[aria-label='Clear']").click()

    _upload(driver, "#image-upload", path)
    _wait_text(driver, "#image-status", r"clicks: no clicks yet")
    src, shown = _shown_image(driver, "#image-view")
    assert shown.shape == image.shape

    _click_pixel(driver, "#image-view", *TARGET)
    found = _wait_text(driver, "#image-status", r"clicks: \+ \((\d+), (\d+)\) · g = 0\.5 ")
    click = (float(found.group(1)), float(found.group(2)))
    assert abs(click[0] - TARGET[0]) <= 1 and abs(click[1] - TARGET[1]) <= 1

    masks, _, _ = predictor.predict_granularities(np.array([click]), np.array([1]), GRANULARITY_GRID, m2m=True)
    by_g = dict(zip(GRANULARITY_GRID, masks, strict=True))
    start = by_g[START_G]
    assert 0.02 < start.mean() < 0.9  # a real mask, not all or nothing
    # The g the slider moves to: the one whose mask differs most from the start's.
    target_g = max(GRANULARITY_GRID, key=lambda g: int((by_g[g] != start).sum()))
    assert (by_g[target_g] != start).sum() > 100

    src, shown = _shown_image(driver, "#image-view", previous=src)
    expected_start = _expected_view(image, start, click)
    # The preview is a JPEG: equal up to compression noise, far below the mask overlay's own effect.
    assert _error(shown, expected_start) < 0.5 * _error(shown, draw_clicks(image.copy(), [click], [1]))
    shots = _screenshot_dir(tmp_path_factory)

    from selenium.webdriver.common.keys import Keys

    slider = _css(driver, "#image-granularity input[type=range]")
    steps = round((target_g - START_G) * 10)
    driver.execute_script("arguments[0].focus();", slider)
    slider.send_keys(*([Keys.ARROW_RIGHT if steps > 0 else Keys.ARROW_LEFT] * abs(steps)))
    _wait_text(driver, "#image-status", rf"· g = {target_g:g} · area {int(by_g[target_g].sum())} px")
    src, shown = _shown_image(driver, "#image-view", previous=src)
    expected_target = _expected_view(image, by_g[target_g], click)
    assert _error(shown, expected_target) < 0.5 * _error(shown, draw_clicks(image.copy(), [click], [1]))
    # Where the two g's overlays differ, the page shows the target g's, not the start's.
    differ = np.any(expected_target != expected_start, axis=2)
    to_target = np.abs(shown[differ].astype(int) - expected_target[differ]).mean()
    to_start = np.abs(shown[differ].astype(int) - expected_start[differ]).mean()
    assert to_target < 0.5 * to_start

    _css(driver, "#image-save").click()
    links = _wait("the download links", lambda: _download_links(driver, "#image-files"))
    png_name = f"astronaut_g{target_g:g}.png"
    assert set(links) == {png_name, "astronaut_masks.json"}
    downloaded = np.asarray(Image.open(io.BytesIO(_fetch(links[png_name])))) > 0
    np.testing.assert_array_equal(downloaded, by_g[target_g])  # the exact mask of the predictor for that g
    _css(driver, "#image-strip img")
    driver.save_screenshot(str(shots / "app_image.png"))


def test_whole_image_tab(driver: Any, astronaut: tuple[np.ndarray, Path],
                         tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _tab(driver, "Whole image")
    _upload(driver, "#whole-upload", astronaut[1])
    _wait_text(driver, "#whole-status", "press Segment")
    _wait("the 8×8 grid option", lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, "#whole-grid label")
                                         if "8×8" == e.text.strip()])[0].click()
    # Random weights pass none of the evaluation's thresholds: lower them to see masks.
    _wait("the thresholds", lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, "button")
                                     if e.text.strip().startswith("thresholds")])[0].click()
    for field in ("#whole-iou-threshold input", "#whole-stability-threshold input"):
        box = _css(driver, field)
        box.clear()
        box.send_keys("0", Keys.TAB)
    _css(driver, "#whole-run").click()
    found = _wait_text(driver, "#whole-status", r"(\d+) masks? at g = 0\.5 \(8×8 points, [\d.]+ s\)")
    count = int(found.group(1))
    assert count > 0
    links = _wait("the JSON link", lambda: _download_links(driver, "#whole-files"))
    doc = json.loads(_fetch(links["astronaut_all_masks.json"]))
    assert len(doc["annotations"]) == count and doc["settings"]["thresholds"] == {"0.5": [0.0, 0.0]}
    _, shown = _shown_image(driver, "#whole-view")
    expected = overlay_masks(astronaut[0], [decode_rle(a["segmentation"]) for a in doc["annotations"]])
    assert _error(shown, expected) < 0.5 * _error(shown, astronaut[0])  # the masks are drawn over the photo
    driver.save_screenshot(str(_screenshot_dir(tmp_path_factory) / "app_whole_image.png"))


def test_video_tab(driver: Any, astronaut: tuple[np.ndarray, Path],
                   tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("browser_frames")
    small = astronaut[0][::2, ::2]
    frames = []
    for k in range(3):
        frames.append(folder / f"frame_{k}.png")
        Image.fromarray(np.ascontiguousarray(np.roll(small, 5 * k, axis=1))).save(frames[-1])
    _tab(driver, "Video")
    _upload(driver, "#video-upload", *frames)
    _wait_text(driver, "#video-status", r"^3 frames · clicks on frame 0: no clicks yet")
    _click_pixel(driver, "#video-first", 125, 90)
    _wait_text(driver, "#video-status", r"clicks on frame 0: \+ \(\d+, \d+\)")
    _css(driver, "#video-run").click()
    _wait_text(driver, "#video-status", r"tracked 3 frames$")
    links = _wait("the zip link", lambda: _download_links(driver, "#video-files"))
    assert list(links) == ["tracked_masks.zip"]
    _css(driver, "#video-play img")
    driver.save_screenshot(str(_screenshot_dir(tmp_path_factory) / "app_video.png"))


def test_server_wrote_only_into_its_temporary_folder(driver: Any, server: dict[str, Any]) -> None:
    workdir: Path = server["workdir"]
    assert workdir.is_dir() and any(workdir.rglob("*.png"))  # uploads and downloads went there
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert not workdir.exists(), "the temporary folder survived the server"
    assert list(server["cwd"].iterdir()) == [] and list(server["home"].iterdir()) == []
    log = server["log"].read_text()
    assert "Traceback" not in log, log
    # Gradio logs its own HTTP requests (httpx): only to this server, never to analytics or update checks.
    requested = re.findall(r"HTTP Request: \w+ (\S+)", log)
    assert requested and all(u.startswith(server["url"].rstrip("/")) for u in requested), requested
