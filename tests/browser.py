"""Debian's Chromium driven by Playwright (browsers cannot be downloaded here), and
what the browser tests ask of a page: non-blank canvas pixels, decoded images."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Playwright gives every launch a fresh --user-data-dir of its own."""

LIT_PIXELS = """() => {
  const lit = [];
  for (const canvas of document.querySelectorAll('canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const context = canvas.getContext('2d', {willReadFrequently: true});
    if (!context) continue;
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] || data[i + 1] || data[i + 2]) count++;
    lit.push(count);
  }
  return lit;
}"""
"""The non-black pixels of each 2D canvas of the page (cornerstone draws on those)."""


def launch(playwright: Playwright) -> Browser:
    """Chromium from Debian's package; missing, it is a failure (CI installs it)."""
    assert CHROMIUM.exists() or shutil.which("chromium"), "apt-get install chromium"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def wait_for_pixels(
    page: Page, canvases: int = 1, timeout: float = 30.0, at_least: int = 100
) -> float:
    """Seconds until ``canvases`` canvases each show ``at_least`` non-black pixels."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        lit = [count for count in page.evaluate(LIT_PIXELS) if count >= at_least]
        if len(lit) >= canvases:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{canvases} canvases did not draw {at_least} pixels within {timeout} s")


def skip_tour(page: Page) -> None:
    """Close OHIF's first-visit tour, so that screenshots show the images."""
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()
