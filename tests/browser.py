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
  let most = 0;
  for (const canvas of document.querySelectorAll('canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const context = canvas.getContext('2d', {willReadFrequently: true});
    if (!context) continue;
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let lit = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] || data[i + 1] || data[i + 2]) lit++;
    most = Math.max(most, lit);
  }
  return most;
}"""
"""The most non-black pixels on any 2D canvas of the page (cornerstone draws on one)."""


def launch(playwright: Playwright) -> Browser:
    """Chromium from Debian's package; missing, it is a failure (CI installs it)."""
    assert CHROMIUM.exists() or shutil.which("chromium"), "apt-get install chromium"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def wait_for_pixels(page: Page, timeout: float = 30.0, at_least: int = 100) -> float:
    """Seconds until a canvas shows at least ``at_least`` non-black pixels."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if page.evaluate(LIT_PIXELS) >= at_least:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"no canvas drew {at_least} non-black pixels within {timeout} s")
