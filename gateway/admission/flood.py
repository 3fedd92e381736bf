"""When the gate demands proof-of-work, and checking the proof a browser brings.

Proof is demanded for a room when a host or admin switched it on, when the room's rejection
pressure crosses the threshold, or when the whole gate's does; the difficulty rises with the
pressure. A proof is checked before the attempt is charged against the room's, the invite's and
the gate's limits, costs one hash and one HMAC, and can be used once. Asking for a challenge and
answering one wrongly are charged against the asker's own address and network limits, so a
flood cannot have challenges made for it without limit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any

from gateway.admission.challenge import (
    Challenge,
    ChallengeFailed,
    difficulty_for,
    issue_challenge,
    verify_solution,
)
from gateway.admission.limits import PRESSURE_WINDOW_SECONDS, Attempt, RateLimiter
from gateway.errors import MeetgateError
from gateway.i18n import N_
from gateway.metrics import Metrics
from gateway.settings import ChallengeSettings
from gateway.store import Store
from gateway.store.records import Room

GATE_PRESSURE_FACTOR = 10


@dataclass(frozen=True, slots=True)
class Proof:
    """What a browser sends back: the challenge token and its answer."""

    token: str
    answer: str


class ChallengeRequired(MeetgateError):
    """Not an error shown as such: the pages answer it with the solver page."""

    status = 200
    code = "challenge_required"
    title = N_("One moment")
    message = N_("This meeting asks your browser for a short calculation before you join.")

    def __init__(self, challenge: Challenge) -> None:
        super().__init__()
        self.challenge = challenge


class FloodGuard:
    def __init__(
        self,
        store: Store,
        limiter: RateLimiter,
        settings: ChallengeSettings,
        secret: bytes,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._settings = settings
        # A key of its own, derived so that a challenge token can never pass as anything else.
        self._key = hmac.new(secret, b"meetgate proof-of-work", hashlib.sha256).digest()
        self._metrics = metrics

    async def demanded(self, room: Room | None, *, registration: bool = False) -> int | None:
        """The difficulty an attempt on `room` must prove now, or None. A join reads its room's
        joins' refusals; with `registration`, a registration reads its room's registration
        pages' too (a registration flood asks proof of registrations, never of joins)."""
        mode = self._settings.mode
        if mode == "off":
            return None
        gate_pressure = await self._limiter.pressure(None)
        room_pressure = await self._limiter.pressure(room.name) if room is not None else 0
        if room is not None and registration:
            room_pressure = max(
                room_pressure, await self._limiter.pressure(room.name, registration=True)
            )
        threshold = self._settings.pressure_threshold
        flooded = room_pressure >= threshold or gate_pressure >= threshold * GATE_PRESSURE_FACTOR
        if mode == "auto" and not flooded and not (room is not None and room.pow_required):
            return None
        pressure = max(room_pressure, gate_pressure // GATE_PRESSURE_FACTOR)
        return difficulty_for(
            pressure,
            base=self._settings.base_difficulty,
            step=self._settings.difficulty_step,
            maximum=self._settings.max_difficulty,
        )

    async def room_rule(self) -> tuple[int, int] | bool:
        """When proof is demanded of an attempt on a room, so far as it depends on the room:
        True for every room (always on, or the whole gate is flooded), False for none (off),
        else (pressure window, threshold): of a room that asks for it, or whose rejections in
        the window reach the threshold."""
        mode = self._settings.mode
        if mode == "off":
            return False
        if await self.demanded(None) is not None:
            return True
        return (PRESSURE_WINDOW_SECONDS, self._settings.pressure_threshold)

    async def status(self, room: Room) -> dict[str, Any]:
        """What a host sees about pressure on their room: refusals and the proof demanded."""
        room_pressure = await self._limiter.pressure(room.name)
        gate_pressure = await self._limiter.pressure(None)
        difficulty = await self.demanded(room)
        return {
            "under_attack": room_pressure >= self._settings.pressure_threshold
            or difficulty is not None,
            "refused_10s": room_pressure,
            "gate_refused_10s": gate_pressure,
            "proof_of_work": difficulty,
        }

    def challenge(self, *, client_addr: str, room: str, now: float, difficulty: int) -> Challenge:
        self._metrics.challenges_issued.inc()
        return issue_challenge(
            self._key,
            client_addr=client_addr,
            room=room,
            now=now,
            difficulty=difficulty,
            max_age_seconds=self._settings.max_age_seconds,
        )

    async def check(
        self,
        proof: Proof | None,
        *,
        client_addr: str,
        room: Room,
        now: float,
        registration: bool = False,
    ) -> None:
        """Pass if no proof is demanded or `proof` is a fresh, unused, right answer for this
        room and address; ChallengeRequired (with a new challenge) or ChallengeFailed else.
        `registration`: the attempt is a registration (`demanded`)."""
        difficulty = await self.demanded(room, registration=registration)
        if difficulty is None:
            return
        if proof is None or not proof.token:
            # A challenge is not counted against the room's, the invite's or the gate's limits,
            # but against the asker's own address and network: challenges are not free to farm.
            # (A refusal goes in the room's evidence.)
            self._limiter.room_seen(room.name)
            await self._limiter.charge(Attempt(client_addr, named_room=room.name))
            raise ChallengeRequired(
                self.challenge(
                    client_addr=client_addr, room=room.name, now=now, difficulty=difficulty
                )
            )
        try:
            solved = verify_solution(
                self._key,
                proof.token,
                proof.answer,
                client_addr=client_addr,
                room=room.name,
                now=now,
                max_age_seconds=self._settings.max_age_seconds,
            )
            ttl = max(1, math.ceil(solved.expires_at - now))
            if not await self._store.claim_once(f"pow:{solved.challenge_id}", ttl):
                raise ChallengeFailed("replayed")
        except ChallengeFailed:
            self._metrics.challenges_failed.inc()
            self._metrics.rejections.inc(reason="challenge")
            # Nor are wrong, stale or replayed answers free to send.
            self._limiter.room_seen(room.name)
            await self._limiter.charge(Attempt(client_addr, named_room=room.name))
            raise
        self._metrics.challenges_solved.inc()
