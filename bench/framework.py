"""The framework floor for redemptions: the join route's shape in FastAPI, with none of its work.

Same route pattern, same 303 with Location and an HttpOnly Set-Cookie as `gateway.web.pages`
answers, but no invite, no store, no ticket: what a redemption would cost if the pipeline took
no time at all, so `redemptions/s ÷ floor/s` is the pipeline's share of Meetgate's cost.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/j/{token}")
async def join(token: str) -> RedirectResponse:
    response = RedirectResponse("/bench#jwt=x", status_code=303)
    response.set_cookie("meetgate", "x", max_age=43200, path="/", httponly=True, samesite="lax")
    return response
