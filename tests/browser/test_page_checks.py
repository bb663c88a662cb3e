"""The checks themselves can fail: a page that breaks each rule is caught, and no browser process
outlives its context."""

from __future__ import annotations

import pytest

from tests.browser.chromium import _ours, headless_chromium, png_colours, require

BROKEN = """<!doctype html><html><head><title>broken</title>
<link rel="stylesheet" href="https://cdn.example.com/style.css"></head><body>
<h1>Broken</h1><img alt="remote" src="http://example.com/plot.png">
<img alt="corrupt" src="data:image/png;base64,AAAA">
<script>console.error("boom"); notDefined();</script></body></html>"""


def test_a_broken_page_is_caught(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN)
    view = browser.open(page)
    assert view.title == "broken" and view.heading_texts("h1") == ["Broken"]
    assert {"https://cdn.example.com/style.css", "http://example.com/plot.png"} <= set(view.external_requests)
    assert view.requests[0] == view.url  # the page itself is local, and counted
    assert [i["naturalWidth"] for i in view.images] == [0, 0]  # neither image rendered
    errors = "\n".join(view.console_errors)
    assert '"boom"' in errors and "notDefined is not defined" in errors
    assert "ERR_NAME_NOT_RESOLVED" in errors  # the resolver rule cut the network off


def test_a_blank_screenshot_is_told_apart(browser, tmp_path):
    page = tmp_path / "blank.html"
    page.write_text("<!doctype html><html><head><title>blank</title></head><body></body></html>")
    browser.open(page)
    size, colours, ink = png_colours(browser.screenshot(tmp_path / "blank.png").read_bytes())
    assert size[0] > 0 and colours == 1 and ink == 0.0


@pytest.mark.timeout(120)
def test_no_browser_process_outlives_its_context(tmp_path):
    require()
    profile = tmp_path / "profile"
    with headless_chromium(profile) as b:
        assert _ours(profile), "the browser should be running, named by its profile folder"
        assert b.driver.execute_script("return 1 + 1") == 2
    assert _ours(profile) == []
