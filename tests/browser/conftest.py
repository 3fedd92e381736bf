"""Every browser test is a journey that stays on the gate's origin (issue 17): the browser these
tests share is watched from its launch, and after each test what its contexts asked for is
checked (tests/browser/origins.py). A test signing in elsewhere declares it:
`origins.allow(provider.url)`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.origins import OriginLog, assert_stays_on_origin
from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def origin_log() -> Iterator[OriginLog]:
    log = OriginLog()
    yield log
    # What was asked for after the last test (a module's contexts closing) is checked too.
    assert_stays_on_origin("after the last browser test", *log.take())


@pytest.fixture(scope="module")
def chromium(origin_log: OriginLog) -> Iterator[Browser]:
    """One headless chromium for the module, watched: each test opens contexts of its own."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        origin_log.watch(browser)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def origins(origin_log: OriginLog, request: pytest.FixtureRequest) -> Iterator[OriginLog]:
    """After the test: nothing its browsers asked for left their pages' origin, but for the
    origins it allowed. What came before it (a module's fixtures) counts as its own."""
    yield origin_log
    assert_stays_on_origin(request.node.nodeid, *origin_log.take())
