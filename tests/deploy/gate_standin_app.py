"""Plays Meetgate behind a TLS front for the static-offload tests: `/_meetgate/forward-auth`
says yes (204) to everything, every other request is answered `gate` with `x-answered-by: gate`,
so a test sees which requests the front offloaded and which it left to Meetgate.

Run as `python gate_standin_app.py --port N`.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/_meetgate/forward-auth":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"x-answered-by", b"gate"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"gate"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
