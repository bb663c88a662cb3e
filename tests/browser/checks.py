"""What a person relies on in a report page, asserted on a ``PageView``."""

from __future__ import annotations

from tests.browser.chromium import PageView


def assert_readable_report(view: PageView, title: str, sections: list[str], images: int) -> None:
    """Title and sections as expected, every plot rendered and inside the page, tables with a
    header and rows whose cells show their whole text, no console error, nothing fetched."""
    assert view.title == title and view.heading_texts("h1") == [title]
    assert view.heading_texts("h2") == sections
    assert view.console_errors == [], view.console_errors
    assert view.requests and view.requests[0] == view.url
    assert view.external_requests == [], view.external_requests
    layout = view.layout
    assert layout["scrollWidth"] <= layout["viewport"], f"page wider than the window: {layout}"
    assert len(view.images) == images, [i["alt"] for i in view.images]
    for img in view.images:
        assert img["src"].startswith("data:image/png;base64,"), img
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["width"] > 100 and img["height"] > 100, f"plot drawn too small: {img}"
        assert img["x"] + img["width"] <= layout["bodyRight"] + 1, f"plot spills out of the page: {img}"
    for svg in view.svgs:
        assert svg["width"] > 0 and svg["height"] > 0, svg
    assert view.tables, "no table"
    for table in view.tables:
        assert table["header"] and table["rows"] > 0, table
        assert table["clipped"] == 0, f"table cells cut off: {table['header']}"
        assert table["x"] + table["width"] <= layout["bodyRight"] + 1, f"table spills out: {table['header']}"


def table_with(view: PageView, first_header: str) -> dict:
    found = [t for t in view.tables if t["header"] and t["header"][0] == first_header]
    assert len(found) == 1, [t["header"] for t in view.tables]
    return found[0]
