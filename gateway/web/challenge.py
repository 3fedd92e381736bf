"""The proof-of-work page every entry path answers with when the room's flood guard demands one:
the value a route returns for it, the proof read back from the solved page's form, and the one
function that turns the value into HTTP.

The page carries a challenge made for this request, so it is never stored by a cache: it says
`cache-control: no-store` itself rather than leaving it to the security headers' default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import HTMLResponse
from starlette.types import Scope

from gateway.admission.flood import ChallengeRequired, Proof
from gateway.edge.requests import request_id
from gateway.edge.templating import render


@dataclass(frozen=True, slots=True)
class Challenge:
    """The proof-of-work page; solved, it posts `fields` to `action` again."""

    action: str
    demand: ChallengeRequired
    fields: dict[str, str]


def proof_in(form: Mapping[str, str]) -> Proof | None:
    """The proof a solved challenge page posted along with its fields, if it posted one."""
    return Proof(form["pow_token"], form.get("answer", "")) if "pow_token" in form else None


def challenge_page(scope: Scope, shown: Challenge) -> HTMLResponse:
    body = render(
        "challenge.html",
        action=shown.action,
        challenge=shown.demand.challenge,
        fields=shown.fields,
        request_id=request_id(scope),
    )
    return HTMLResponse(body, headers={"cache-control": "no-store"})
