"""The proof-of-work page every entry path answers with when the room's flood guard demands one:
the value a route returns for it, the proof read back from the solved page's form, the one
function that turns the value into HTTP, and the checks a page post that starts an entry passes
first (the proof-of-work, then the rate limits).

The page carries a challenge made for this request, so it is never stored by a cache: it says
`cache-control: no-store` itself rather than leaving it to the security headers' default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import HTMLResponse
from starlette.types import Scope

from gateway.admission.flood import ChallengeRequired, FloodGuard, Proof
from gateway.admission.limits import Attempt, RateLimiter
from gateway.edge.requests import request_id
from gateway.edge.templating import render
from gateway.store.records import Room


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


class EntryChecks:
    """What a post that starts an entry (a knock on the lobby, a sign-in) passes before its own
    work: the room's flood guard, then the address's and room's rate limits. Without a valid
    proof under a flood, nothing is charged: the challenge page comes first."""

    def __init__(self, flood: FloodGuard, limiter: RateLimiter) -> None:
        self._flood = flood
        self._limiter = limiter

    async def demand(
        self, proof: Proof | None, *, client_addr: str, room: Room, now: float
    ) -> ChallengeRequired | None:
        """The proof-of-work the flood guard demands, if it does; else the attempt is charged
        (RateLimited over a limit)."""
        try:
            await self._flood.check(proof, client_addr=client_addr, room=room, now=now)
        except ChallengeRequired as demand:
            return demand
        await self._limiter.charge(Attempt(client_addr, room=room.name))
        return None
