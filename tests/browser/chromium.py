"""Headless Chromium (Debian's, driven by selenium + chromedriver) for the report tests.

``headless_chromium(profile)`` starts one browser, bounded in time, with the network cut off
(every host name resolves to nothing) and yields a ``Browser``; on exit it quits the driver and
kills any process still naming its private profile folder, so no Chromium outlives the test.
``Browser.open(path)`` loads a file:// page and returns a ``PageView``: what a person relies on
(title, headings, images, tables, layout) plus every console error and every request the page made.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_ENV = "ONYXSERVE_REQUIRE_BROWSER"  # set by .ci/run: a missing browser fails, never skips

# On this closed network, Chromium's own background connections (updates, sync, field trials) are
# refused; these flags stop it from trying. The resolver rule makes any page-initiated lookup fail.
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1280,900",
    "--hide-scrollbars",  # the viewport width is then the layout width, with or without overflow
)
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
COMMAND_TIMEOUT_S = 60


def missing() -> str | None:
    """Why headless Chromium cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} not found (Debian package {package}; .ci/run installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def require() -> None:
    """Skip the calling test when the browser is missing, or fail it when REQUIRE_ENV=1."""
    import pytest

    reason = missing()
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"headless Chromium is required ({REQUIRE_ENV}=1) but {reason}")
        pytest.skip(f"headless Chromium unavailable: {reason}")


@dataclass
class PageView:
    url: str
    title: str
    headings: list[tuple[str, str]]  # (tag, text) of h1/h2/h3 in page order
    images: list[dict[str, Any]]
    svgs: list[dict[str, Any]]
    tables: list[dict[str, Any]]  # header cells, row count, empty cells, box
    layout: dict[str, float]  # viewport and document widths: horizontal overflow shows here
    console: list[dict[str, Any]] = field(default_factory=list)  # browser log entries
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    @property
    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.console if e["level"] in ("SEVERE", "WARNING")]

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    def heading_texts(self, *tags: str) -> list[str]:
        return [text for tag, text in self.headings if not tags or tag in tags]


# Waits for every image to decode (data: URIs decode asynchronously), then measures the page.
_MEASURE = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => {
  const box = e => { const r = e.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };
  const body = document.body.getBoundingClientRect();
  done({
    title: document.title,
    headings: Array.from(document.querySelectorAll('h1, h2, h3'))
      .map(h => [h.tagName.toLowerCase(), h.textContent.trim()]),
    images: Array.from(document.images).map(i => ({
      alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
      src: i.getAttribute('src').slice(0, 40), ...box(i)})),
    svgs: Array.from(document.querySelectorAll('svg')).map(s => box(s)),
    tables: Array.from(document.querySelectorAll('table')).map(t => ({
      header: Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim()),
      rows: t.querySelectorAll('tbody tr').length,
      cells: Array.from(t.querySelectorAll('tbody tr'))
        .map(r => Array.from(r.children).map(c => c.textContent.trim())),
      clipped: Array.from(t.querySelectorAll('th, td')).filter(c => c.scrollWidth > c.clientWidth + 1).length,
      ...box(t)})),
    layout: {viewport: innerWidth, scrollWidth: document.documentElement.scrollWidth,
             scrollHeight: document.documentElement.scrollHeight,
             bodyLeft: body.left, bodyRight: body.right},
  });
});
"""


class Browser:
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, path: str | Path) -> PageView:
        """Load ``path`` as file:// and measure it; logs are drained first so that only this page's
        console messages and requests are reported (the start page makes chrome:// requests)."""
        self.driver.get("about:blank")
        self.driver.get_log("browser")
        self.driver.get_log("performance")
        url = Path(path).resolve().as_uri()
        self.driver.get(url)
        found = self.driver.execute_async_script(_MEASURE)
        view = PageView(url=url, **{k: found[k] for k in ("title", "images", "svgs", "tables", "layout")},
                        headings=[tuple(h) for h in found["headings"]])
        view.console = self.driver.get_log("browser")
        view.requests = _requested_urls(self.driver.get_log("performance"))
        return view

    def screenshot(self, path: str | Path) -> Path:
        """A full-page PNG (beyond the viewport), through the DevTools protocol."""
        size = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            },
        )
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _requested_urls(perf_log: list[dict[str, Any]]) -> list[str]:
    urls = []
    for entry in perf_log:
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _ours(profile: Path) -> list[int]:
    """Pids of processes started with our private profile folder: Chromium and its helpers.
    Nothing else names that folder, so killing these never touches another session's browser."""
    marker = f"--user-data-dir={profile}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return pids


def _reap(profile: Path, grace_s: float = 10.0) -> list[int]:
    """Wait for our browser processes to exit after quit; SIGKILL those that do not. Returns the
    pids that had to be killed."""
    deadline = time.monotonic() + grace_s
    while (pids := _ours(profile)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


@contextmanager
def headless_chromium(profile: Path) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: selenium-manager would otherwise try to download one.
    service = Service(str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    driver = None
    # Bounded start: selenium gives chromedriver ~30 s to listen; the driver's HTTP client takes
    # its timeout from the socket default at construction, so the new-session request (which
    # launches Chromium) and every later command fail after COMMAND_TIMEOUT_S instead of stalling.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(COMMAND_TIMEOUT_S)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    finally:
        socket.setdefaulttimeout(previous)
        if driver is None:  # start failed: chromedriver may be up, a browser half-started
            service.stop()
            _reap(profile, grace_s=2.0)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield Browser(driver)
    finally:
        try:
            driver.quit()
        finally:
            _reap(profile)


def png_colours(data: bytes) -> tuple[tuple[int, int], int, float]:
    """(size, distinct colours, share of non-white pixels) of a PNG."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 24) or []
    white = sum(n for n, c in colours if min(c) >= 250)
    return img.size, len(colours), 1.0 - white / (img.size[0] * img.size[1])
