"""Stand-ins for a correctly set-up deployment, run as a real uvicorn process by the doctor tests.

`--role signalling` plays prosody with JWT auth as deploy/ configures it: XMPP over WebSocket
(RFC 7395) and BOSH, SASL ANONYMOUS that succeeds only with a valid ticket in `?token=` (no empty
tokens, no guest domain): HS256 with STANDIN_TICKET_SECRET, or with STANDIN_KEY_SERVER set,
RS256 with the public key fetched from `<key server>/<hex(sha256(kid))>.pem` as mod_auth_token
does with `asap_key_server` (the key server as written, "/", the name), and cached by kid for as
long as the process runs, as mod_auth_token caches it. `--role front` plays the TLS front with
Meetgate behind it: `/_meetgate/health` with Meetgate's HSTS and Content-Security-Policy headers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets

import httpx
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
FEATURES = (
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
    f"<mechanisms xmlns='{SASL}'><mechanism>ANONYMOUS</mechanism></mechanisms>"
    "</stream:features>"
)
SUCCESS = f"<success xmlns='{SASL}'/>"
FAILURE = f"<failure xmlns='{SASL}'><not-authorized/></failure>"


# kid -> public key PEM: like mod_auth_token, a kid once fetched is never fetched again.
PUBLIC_KEYS: dict[str, bytes] = {}


async def verification_key(token: str) -> tuple[str | bytes, str] | None:
    """The key and the one algorithm prosody would check `token` with."""
    key_server = os.environ.get("STANDIN_KEY_SERVER")
    if not key_server:
        return os.environ["STANDIN_TICKET_SECRET"], "HS256"
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    if not isinstance(kid, str):
        return None
    if kid in PUBLIC_KEYS:
        return PUBLIC_KEYS[kid], "RS256"
    name = hashlib.sha256(kid.encode()).hexdigest() + ".pem"
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(f"{key_server}/{name}")
    if response.status_code != 200:
        return None
    PUBLIC_KEYS[kid] = response.content
    return response.content, "RS256"


async def ticket_valid(token: str | None) -> bool:
    """mod_auth_token's decision, as deploy/ configures it: one key, one algorithm, iss and aud."""
    if not token:
        return False
    found = await verification_key(token)
    if found is None:
        return False
    key, algorithm = found
    try:
        jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=os.environ["STANDIN_APP_ID"],
            audience=os.environ["STANDIN_AUDIENCE"],
            # Prosody's JWT library (luajwtjitsi) checks exp and nbf with no leeway, and not iat.
            leeway=0,
            options={"require": ["exp", "nbf", "iss", "aud", "sub", "room"], "verify_iat": False},
        )
    except jwt.PyJWTError:
        return False
    return True


async def xmpp_websocket(socket: WebSocket) -> None:
    token = socket.query_params.get("token")
    await socket.accept(subprotocol="xmpp")
    try:
        while True:
            message = await socket.receive_text()
            if message.startswith("<open"):
                await socket.send_text(
                    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0'"
                    f" from='meet.test' id='{secrets.token_hex(8)}'/>"
                )
                await socket.send_text(FEATURES)
            elif message.startswith("<auth"):
                if await ticket_valid(token):
                    await socket.send_text(SUCCESS)
                else:
                    await socket.send_text(FAILURE)
                    await socket.close()
                    return
            elif message.startswith("<close"):
                await socket.close()
                return
    except WebSocketDisconnect:
        return


BOSH_SESSIONS: dict[str, bool] = {}
_SID = re.compile(r"\bsid=['\"]([^'\"]+)")


def bosh_body(sid: str, inner: str = "", extra: str = "") -> Response:
    return Response(
        f"<body xmlns='http://jabber.org/protocol/httpbind' sid='{sid}'{extra}>{inner}</body>",
        media_type="text/xml",
    )


async def http_bind(request: Request) -> Response:
    if request.method != "POST":
        return PlainTextResponse("It works! Now point your BOSH client to this URL to connect.")
    text = (await request.body()).decode()
    found = _SID.search(text)
    if found is None:
        sid = secrets.token_hex(8)
        BOSH_SESSIONS[sid] = await ticket_valid(request.query_params.get("token"))
        return bosh_body(sid, FEATURES, " wait='2' requests='2' ver='1.6'")
    sid = found.group(1)
    if sid not in BOSH_SESSIONS:
        return bosh_body(sid, extra=" type='terminate' condition='item-not-found'")
    if "type='terminate'" in text or 'type="terminate"' in text:
        del BOSH_SESSIONS[sid]
        return bosh_body(sid, extra=" type='terminate'")
    if "<auth" in text:
        return bosh_body(sid, SUCCESS if BOSH_SESSIONS[sid] else FAILURE)
    return bosh_body(sid)


async def root(request: Request) -> Response:
    return PlainTextResponse("stand-in")


HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


async def health(request: Request) -> Response:
    return PlainTextResponse("ok", headers=HEADERS)


def build(role: str) -> Starlette:
    if role == "signalling":
        return Starlette(
            routes=[
                Route("/", root),
                WebSocketRoute("/xmpp-websocket", xmpp_websocket),
                Route("/http-bind", http_bind, methods=["GET", "POST"]),
            ]
        )
    return Starlette(routes=[Route("/_meetgate/health", health)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["signalling", "front"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    uvicorn.run(
        build(args.role),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
    )


if __name__ == "__main__":
    main()
