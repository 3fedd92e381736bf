"""Shared test set-up: fixtures that start real processes live in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.processes",
    "tests.fixtures.browser",
    "tests.fixtures.redis_server",
    "tests.fixtures.redis_sentinel",
    "tests.fixtures.prosody",
    "tests.fixtures.jitsi_web",
    "tests.fixtures.jitsi_nginx",
    "tests.fixtures.gateway_server",
    "tests.fixtures.smtp",
    "tests.fixtures.oidc",
]
