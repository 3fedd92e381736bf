"""The admin API's schema and docs (issue 17): behind the admin token like every other path, and
nothing loaded from another origin. Through the real `meetgate serve`, with `[admin] docs` off
(the default) and on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process

pytestmark = pytest.mark.slow

# FastAPI's own docs pages, each of which would load Swagger UI or ReDoc from a CDN.
FASTAPI_DOCS = ("/redoc", "/docs/oauth2-redirect")


@pytest.fixture(scope="module")
def admins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GatewayServer]]:
    """A gate with the docs page off (the default), and one with it on. Nothing here reaches
    Jitsi: the upstream is a port nobody listens on."""
    off, off_proc = start_gateway(
        tmp_path_factory.mktemp("docs-off"), upstream="http://127.0.0.1:9"
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MEETGATE_ADMIN__DOCS", "true")
            on, on_proc = start_gateway(
                tmp_path_factory.mktemp("docs-on"), upstream="http://127.0.0.1:9"
            )
        try:
            yield {"off": off, "on": on}
        finally:
            stop_process(on_proc)
    finally:
        stop_process(off_proc)


def anonymous(gateway: GatewayServer, **options: object) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.admin_url, trust_env=False, timeout=10, verify=TLS, **options
    )


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "admin_auth_failed"
    assert set(body) == {"error", "message", "request_id", "fields"}
    assert "Traceback" not in response.text and "openapi" not in response.text.lower()


@pytest.mark.parametrize("docs", ["off", "on"])
@pytest.mark.parametrize("path", ["/openapi.json", "/docs", *FASTAPI_DOCS])
def test_without_the_token_schema_and_docs_are_refused(
    admins: dict[str, GatewayServer], docs: str, path: str
) -> None:
    with anonymous(admins[docs]) as client:
        assert_refused(client.get(path))


# Where a token is not looked for, and spellings of the header that are not the token.
ELSEWHERE = [
    ("?token=TOKEN", {}),
    ("?access_token=TOKEN", {}),
    ("?authorization=Bearer%20TOKEN", {}),
    ("", {"cookie": "token=TOKEN"}),
    ("", {"x-admin-token": "TOKEN"}),
    ("", {"authorization": "TOKEN"}),
    ("", {"authorization": "Basic TOKEN"}),
    ("", {"authorization": "Bearer TOKENx"}),
    ("", {"authorization": "Bearer  TOKEN"}),
    ("", {"authorization": "Bearer wrong"}),
    ("", {"authorization": "Bearer"}),
]


@pytest.mark.parametrize(("query", "headers"), ELSEWHERE, ids=repr)
@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_a_token_anywhere_else_or_altered_is_refused(
    admins: dict[str, GatewayServer], query: str, headers: dict[str, str], path: str
) -> None:
    gateway = admins["on"]
    token = gateway.admin_token
    sent = {name: value.replace("TOKEN", token) for name, value in headers.items()}
    with anonymous(gateway) as client:
        response = client.get(path + query.replace("TOKEN", token), headers=sent)
    assert_refused(response)
    assert token not in response.text


def test_the_schema_with_the_token(admins: dict[str, GatewayServer]) -> None:
    with admins["off"].admin() as client:
        schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/rooms" in schema.json()["paths"]
    # The docs page is no operation of the API.
    assert "/docs" not in schema.json()["paths"]


@pytest.mark.parametrize("path", ["/docs", *FASTAPI_DOCS])
def test_docs_are_off_by_default(admins: dict[str, GatewayServer], path: str) -> None:
    with admins["off"].admin() as client:
        answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


@pytest.mark.parametrize("path", FASTAPI_DOCS)
def test_fastapis_cdn_pages_stay_off_with_docs_on(
    admins: dict[str, GatewayServer], path: str
) -> None:
    with admins["on"].admin() as client:
        assert client.get(path).status_code == 404


def test_the_docs_page_loads_nothing(admins: dict[str, GatewayServer]) -> None:
    """Turned on, /docs is one plain page: no script, no style, no image, no link anywhere, and
    a policy that would stop one."""
    with admins["on"].admin() as client:
        page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    text = page.text
    assert re.search(r"<(script|link|img|iframe|style|object|embed)\b", text, re.I) is None
    assert re.search(r"\b(src|href|srcset|action)\s*=", text, re.I) is None
    assert "://" not in text
    # It is the API's: every operation is on it.
    with admins["on"].admin() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in paths:
        assert f"<code>{path}</code>" in text


def test_the_api_still_works_with_the_token(admins: dict[str, GatewayServer]) -> None:
    with admins["on"].admin() as client:
        assert client.get("/api/v1/rooms").status_code == 200
