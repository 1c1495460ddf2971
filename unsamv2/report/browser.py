"""Look at a Snakemake HTML report the way a reader does: headless Chromium (Debian's `chromium` and
`chromium-driver` packages, driven by selenium; no browser download), a click on a category and on a file's
"eye" button, screenshots. Used by the report's browser test and by ``python -m unsamv2.report.browser``, which
takes the README's screenshots of the demo's report."""
from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["chromium_missing", "headless_chromium", "open_report_file", "screenshot_report"]

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_missing() -> str | None:
    """Why headless Chromium cannot be driven here (``None`` when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no chromium on PATH (apt-get install chromium chromium-driver; .ci/run does this as root)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    reason = chromium_missing()
    if reason is not None:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = next(path for path in map(shutil.which, CHROMIUM_NAMES) if path)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_report_file(driver: Any, report_html: Path, category: str, file_name: str, settle: float = 1.5) -> None:
    """Load the report, open ``category`` in the menu and show the file whose path contains ``file_name``."""
    from selenium.webdriver.common.by import By

    driver.get(Path(report_html).resolve().as_uri())
    time.sleep(settle)
    driver.find_element(By.XPATH, f"//span[text()='{category}']").click()
    time.sleep(0.5)
    row = driver.find_element(By.XPATH, f"//tr[td[contains(text(), '{file_name}')]]")
    row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
    time.sleep(settle)


def screenshot_report(report_html: Path, views: list[tuple[str, str]], out_dir: Path) -> list[Path]:
    """One PNG per (category, file) view of the report, named after the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    with headless_chromium() as driver:
        for category, file_name in views:
            open_report_file(driver, report_html, category, file_name)
            shot = out_dir / f"report_{Path(file_name).stem}.png"
            driver.save_screenshot(str(shot))
            shots.append(shot)
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description="screenshots of a Snakemake report in headless Chromium")
    parser.add_argument("report", type=Path)
    parser.add_argument("--view", nargs=2, action="append", metavar=("CATEGORY", "FILE"), required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    for shot in screenshot_report(args.report, [tuple(v) for v in args.view], args.out_dir):
        print(shot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
