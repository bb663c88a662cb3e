"""One headless Chromium per test module. Without the browser the tests skip, with the reason,
unless ONYXSERVE_REQUIRE_BROWSER=1 (set by .ci/run): then they fail, so CI never skips them."""

from __future__ import annotations

import pytest

from tests.browser.chromium import headless_chromium, require


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require()
    with headless_chromium(tmp_path_factory.mktemp("chromium") / "profile") as b:
        yield b
