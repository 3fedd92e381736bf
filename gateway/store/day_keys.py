"""The day's address key, held only in the replicas' memory and agreed among them over pub/sub
(docs/privacy.md, "Client addresses"): no store key, no AOF, no backup ever holds it.

A replica that needs a day's key asks on a channel; a replica holding it answers at once. With
no answer within ANSWER_WAIT_SECONDS it makes one of its own and announces it with the time it
was made. Every replica announces the keys it holds every ANNOUNCE_SECONDS (and as soon as it
has subscribed again after a drop), answers at once a key it hears that loses to its own, and
adopts the winner of what it hears for a day: the key made first, of two made in the same
millisecond the smaller. So replicas that made keys at the same moment (none holding one yet,
or the holders' subscriptions down for a Redis restart) agree as soon as they hear each other,
at most one announcement later, on the older key: one held through a Redis restart survives
it. Until then each counts rate limits under its own key, so a client may be counted apart on
each: at most the replicas' number of times its limit, for that while. Pub/sub messages are
never written to the AOF nor to a snapshot; Redis relays them and forgets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from gateway.errors import StoreUnavailable

if TYPE_CHECKING:
    from gateway.store import Subscription

CHANNEL: Final = "day-keys"
# How long a replica that asked waits for another's answer before it makes a key of its own.
ANSWER_WAIT_SECONDS: Final = 0.25
# How often each replica announces the keys it holds (so replicas that missed each other's
# announcement, or made keys at the same moment, still agree within this long).
ANNOUNCE_SECONDS: Final = 30.0
# How long a replica whose subscription failed waits before it subscribes again.
_RESUBSCRIBE_SECONDS: Final = 1.0
# How long a replica that needs a key waits for its subscription before it makes one of its own
# (the store's deadline for a call, when the store gives one).
SUBSCRIBE_WAIT_SECONDS: Final = 2.0
_DAY_SECONDS: Final = 86_400
# "ask <day>" and "key <day> <when made, ms since the epoch> <64 hex digits>": anything else on
# the channel is ignored.
_MESSAGE: Final = re.compile(r"(ask) (\d{1,9})|(key) (\d{1,9}) (\d{1,15}) ([0-9a-f]{64})")


class DayKeys:
    """This replica's keys of today, yesterday and (a clock ahead) tomorrow; `publish` and
    `subscribe`: the store's pub/sub. `clock`: the wall clock, in seconds."""

    def __init__(
        self,
        publish: Callable[[str, str], Awaitable[None]],
        subscribe: Callable[[str], Subscription],
        *,
        clock: Callable[[], float] = time.time,
        answer_wait: float = ANSWER_WAIT_SECONDS,
        announce_every: float = ANNOUNCE_SECONDS,
        subscribe_wait: float = SUBSCRIBE_WAIT_SECONDS,
    ) -> None:
        self._publish = publish
        self._subscribe = subscribe
        self._clock = clock
        self._answer_wait = answer_wait
        self._announce_every = announce_every
        self._subscribe_wait = subscribe_wait
        self._keys: dict[int, tuple[int, str]] = {}  # day -> (when made, in ms; the key)
        self._latest = 0
        # Days this replica has asked about: it asks once and then relies on announcements.
        self._asked: dict[int, asyncio.Task[None]] = {}
        self._heard: dict[int, asyncio.Event] = {}
        self._listening: asyncio.Task[None] | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._failure: StoreUnavailable | None = None

    def _today(self) -> int:
        # The latest day asked for counts too, so that a caller's clock a little ahead of this
        # one's does not see its key forgotten.
        return max(int(self._clock() // _DAY_SECONDS), self._latest)

    def _forget_old(self) -> None:
        today = self._today()
        for old in [day for day in self._keys if day < today - 1]:
            del self._keys[old]
        for old in [day for day in self._asked if day < today - 1]:
            del self._asked[old]
        for old in [day for day in self._heard if day < today - 1]:
            del self._heard[old]

    def held(self, day: int) -> str | None:
        """The key held for `day` now, without asking anyone."""
        held = self._keys.get(day)
        return None if held is None else held[1]

    async def key(self, day: int, *, create: bool) -> str | None:
        """The key for `day`: the one held, else one another replica answers with, else (with
        `create`) a new one, announced when the channel can be reached. Without `create`, None
        when no replica answers, StoreUnavailable if the channel cannot be reached."""
        self._latest = max(self._latest, day)
        self._forget_old()
        if day in self._keys:
            return self._keys[day][1]
        await self._start()
        asking = self._asked.get(day)
        if asking is None or (asking.done() and asking.exception() is not None):
            asking = self._asked[day] = asyncio.get_running_loop().create_task(
                self._ask(day), name=f"meetgate day key {day}"
            )
        try:
            await asyncio.shield(asking)
        except StoreUnavailable:
            if not create:
                raise
            # The channel is out of reach (Redis away, or this replica's subscription not back
            # yet): a key of this replica's own, so that a join is judged by the store alone, as
            # it would be without the channel. It is announced once the channel is back and
            # gives way to an older key heard then (limits counted apart meanwhile).
        if day not in self._keys and create:
            self._adopt(day, (int(self._clock() * 1000), secrets.token_hex(32)))
            with contextlib.suppress(StoreUnavailable):
                await self._announce(day)
        return self.held(day)

    async def _ask(self, day: int) -> None:
        heard = self._heard.setdefault(day, asyncio.Event())
        await self._ready()
        await self._publish(CHANNEL, f"ask {day}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._answer_wait):
                await heard.wait()

    async def _start(self) -> None:
        if self._listening is None or self._listening.done():
            self._subscribed.clear()
            self._listening = asyncio.get_running_loop().create_task(
                self._listen(), name="meetgate day keys"
            )
        if self._announcing is None:
            self._announcing = asyncio.get_running_loop().create_task(
                self._announce_periodically(), name="meetgate day keys announce"
            )

    async def _ready(self) -> None:
        try:
            async with asyncio.timeout(self._subscribe_wait):
                await self._subscribed.wait()
        except TimeoutError as exc:
            raise StoreUnavailable() from exc
        if self._failure is not None:
            raise self._failure

    async def _listen(self) -> None:
        while True:
            subscription = self._subscribe(CHANNEL)
            try:
                await subscription.ready()
                self._failure = None
                self._subscribed.set()
                # Asks and announcements made while this one was away went unheard.
                with contextlib.suppress(StoreUnavailable):
                    for day in list(self._keys):
                        await self._announce(day)
                async for message in subscription:
                    await self._heard_message(message)
            except StoreUnavailable as failure:
                # Redis is away (or failed over): the keys held stay; subscribe again shortly.
                self._failure = failure
                self._subscribed.set()
            finally:
                await subscription.aclose()
            await asyncio.sleep(_RESUBSCRIBE_SECONDS)
            self._subscribed.clear()

    async def _heard_message(self, message: str) -> None:
        parsed = _MESSAGE.fullmatch(message)
        if parsed is None:
            return
        today = self._today()
        if parsed[1] == "ask":
            day = int(parsed[2])
            if day in self._keys:
                with contextlib.suppress(StoreUnavailable):
                    await self._announce(day)
            return
        day = int(parsed[4])
        if not today - 1 <= day <= today + 1:
            return
        heard = (int(parsed[5]), parsed[6])
        if not self._adopt(day, heard):
            # It loses to the key held here: tell its holder now, not a period later.
            with contextlib.suppress(StoreUnavailable):
                await self._announce(day)

    def _adopt(self, day: int, key: tuple[int, str]) -> bool:
        """Hold `key` for `day` unless it loses to the one held; False if it lost."""
        held = self._keys.get(day)
        self._heard.setdefault(day, asyncio.Event()).set()
        if held is None or key <= held:
            self._keys[day] = key
            return True
        return False

    async def _announce(self, day: int) -> None:
        held = self._keys.get(day)
        if held is not None:
            await self._publish(CHANNEL, f"key {day} {held[0]} {held[1]}")

    async def _announce_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._announce_every)
            self._forget_old()
            for day in list(self._keys):
                try:
                    await self._announce(day)
                except StoreUnavailable:
                    break

    async def close(self) -> None:
        tasks = [t for t in (self._listening, self._announcing, *self._asked.values()) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._keys.clear()
