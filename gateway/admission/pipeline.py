"""The admission pipeline: limit → identify → policy → admit; and the admission a browser holds.

Every join attempt is charged against the rate limits before any work beyond one keyed read
that tells which room it is for; a flooded room first asks for proof-of-work.

An admission's id is the SHA-256 of the secret in the browser's cookie, so the store (and a ticket,
which names the admission) never holds anything a thief could replay as a cookie.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import NoReturn, TypeVar

from gateway.admission.flood import FloodGuard, Proof
from gateway.admission.host_names import HostNames
from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.invites import TOKEN_SHAPE, hash_token, parse_token
from gateway.admission.limits import (
    GATE,
    PRESSURE_WINDOW_SECONDS,
    UNKNOWN_NETWORK,
    Attempt,
    RateLimiter,
)
from gateway.admission.names import (
    NameChoices,
    claim_shown_name,
    host_shape,
    name_choices,
    normalise,
)
from gateway.admission.policy import Decision, Verdict, decide
from gateway.admission.registrations import Registrations
from gateway.admission.rooms import MAX_MOVES
from gateway.cuts import Cut
from gateway.errors import (
    AdmissionBanned,
    AdmissionReplaced,
    AdmissionRevoked,
    InvalidInput,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsedUp,
    MeetgateError,
    NotAdmitted,
    NotAllowed,
    RoomLocked,
    StoreMemoryLost,
    StoreUnavailable,
)
from gateway.i18n import N_
from gateway.metrics import Metrics
from gateway.store import (
    InviteJoin,
    InviteJoined,
    LinkFound,
    LinkJoin,
    LinkUnknown,
    PlainJoin,
    Store,
)
from gateway.store.records import (
    Admission,
    Invite,
    JoinPlan,
    LimitCharge,
    NameClaim,
    RateDecision,
    Role,
    Room,
    RoomPolicy,
)

# Why a name was refused, as the evidence log says it: a name looking like one of the room's
# hosts' was passed over, or every number for a look-alike was taken.
LOOKS_LIKE_A_HOST = "looks-like-a-host"
TOO_MANY_LOOK_ALIKES = "too-many-look-alikes"
# Why an admission's connections are cut when its person signed in again (the cuts' metric label).
SIGNED_IN_AGAIN = "signed in again"
COOKIE_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# What a replica remembers of the join links it has looked up (token hash -> what it found), so
# that a join through one is a single store call; past this many it forgets the oldest, and it
# forgets each after KNOWN_LINK_SECONDS. A minute covers reading a link's page and pressing its
# button, which is what the kept entry saves a store call for (a link not kept costs one store
# call too, `Store.join_plainly`, unless its room needs the gate); past that nothing of a room
# is kept for a link nobody follows, nor after the room is gone. Of a room's record only what a
# join through an invite reads is kept (`_kept_room`): not its hosts or the addresses its policy
# names.
MAX_KNOWN_LINKS = 10_000
KNOWN_LINK_SECONDS = 60.0
# How often a join asks the store again when the room it expected has changed meanwhile (a lock,
# a move) before it goes on step by step.
LINK_TRIES = 3
# Where a link that leads nowhere counts toward the gate's pressure (as RateLimiter.note_rejection
# counts a refusal), in the store call that finds it leads nowhere.
UNKNOWN_COUNTER = (f"reject:{GATE}", PRESSURE_WINDOW_SECONDS)
# How long a replica keeps the admission a join asked for when the store's answer was lost (it
# may have been written: the invite's use is spent then), and for how many links at most.
UNANSWERED_SECONDS = 60.0
MAX_UNANSWERED = 1024
MAX_UNANSWERED_PER_LINK = 4

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Admitted:
    cookie_secret: str
    admission: Admission


@dataclass(frozen=True, slots=True)
class Located:
    """Where a join link leads: its invite and the room the meeting is in now."""

    token: str
    token_hash: str
    invite: Invite
    room: Room
    # The store's mark of the room's record as found (`LinkFound.stamp`).
    stamp: str = ""
    # Whether this is what the replica kept from an earlier request (`known_link`), rather
    # than read for this one.
    kept: bool = False

    @property
    def found(self) -> LinkFound:
        return LinkFound(self.invite, self.room, self.stamp)


def _kept_room(room: Room) -> Room:
    """`room` as a replica keeps it for a join through an invite (`AdmissionPipeline.redeem`):
    without its hosts and, of its policy, only whether it takes invites and has a lobby (what
    `decide` reads of it for an invite). A join through it is carried out only while the room's
    stored record is the one found (`LinkFound.stamp`), which this leaves as it was."""
    policy = RoomPolicy(invite=room.policy.invite, lobby=room.policy.lobby)
    return dataclasses.replace(room, hosts=(), policy=policy)


def _ignore(_: str) -> None:
    """A `room_language` that has no use for it."""


def pseudonym(key: bytes, kind: str, subject: str) -> str:
    """A stable identity that names nobody outside this deployment (keyed hash)."""
    digest = hmac.new(key, f"{kind}:{subject}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def key_fingerprint(pseudonym_key: bytes) -> str:
    """Which pseudonym key this is, as a join plan names it (`JoinPlan.key`): a keyed hash of a
    fixed text, so the store learns nothing of the key."""
    return hmac.new(pseudonym_key, b"meetgate join plan key", hashlib.sha256).hexdigest()[:16]


def join_plan(invite: Invite, pseudonym_key: bytes) -> JoinPlan:
    """What a join through `invite` needs that only the gate can work out (`JoinPlan`), worked
    out once, when the invite is made: its holder's identity (and which key made it, so that a
    join under another key goes step by step, naming the holder as the gate does then), and the
    names of the first claim
    `AdmissionPipeline.redeem` makes when no host's name is reserved that looks like
    the invite's (the name as given and the first numbers: two batches of `name_choices`)."""
    batches = list(islice(name_choices(invite.name, role=invite.role, guest=False), 2))
    return JoinPlan(
        identity=pseudonym(pseudonym_key, Path.INVITE.value, invite.id),
        key=key_fingerprint(pseudonym_key),
        host_shape=host_shape(invite.name),
        shapes=tuple(shape for batch in batches for shape in batch.shapes),
        names=tuple(name for batch in batches for name in batch.names),
    )


def admission_id_for(cookie_secret: str) -> str:
    return hashlib.sha256(cookie_secret.encode("ascii")).hexdigest()


# The ways in whose identity is a person (`via_of`), so that signing in again replaces the
# admission: not an invite's, which an n-use invite's holders share.
REPLACEABLE_VIA = ("oidc:", Path.EMAIL.value)


def replaced_key(admission_id: str) -> str:
    """The short-lived value that marks an admission replaced by its person signing in again."""
    return f"replaced:{admission_id}"


def via_of(verified: VerifiedIdentity) -> str:
    """How someone was admitted, as hosts see it: never an address or a personal detail."""
    if verified.path is Path.INVITE:
        return f"invite:{verified.subject}"
    if verified.path is Path.OIDC:
        return f"oidc:{verified.provider or 'unknown'}"
    return verified.path.value


class LobbyRequired(MeetgateError):
    """Not shown as an error: the pages answer it by queueing the person in the room's lobby."""

    status = 202
    code = "lobby_required"
    title = N_("Waiting for a host")
    message = N_("A host of this meeting lets people in. Your request is waiting.")

    def __init__(self, verified: VerifiedIdentity, room: str) -> None:
        super().__init__()
        self.verified = verified
        self.room = room


def invited(invite: Invite) -> VerifiedIdentity:
    """Who an invite's holder is, verified by the link alone."""
    return VerifiedIdentity(path=Path.INVITE, subject=invite.id, name=invite.name, role=invite.role)


class AdmissionPipeline:
    def __init__(
        self,
        store: Store,
        *,
        pseudonym_key: bytes,
        admission_ttl_seconds: int,
        limiter: RateLimiter,
        flood: FloodGuard,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        registrations: Registrations | None = None,
    ) -> None:
        """`registrations`: told of each address an admission proves (an e-mail code, a sign-in
        with a verified address), for its hosts' "seen before" (`Registrations.remember`)."""
        self._store = store
        self._pseudonym_key = pseudonym_key
        self._registrations = registrations
        self._key_fingerprint = key_fingerprint(pseudonym_key)
        self._ttl = admission_ttl_seconds
        self._limiter = limiter
        self._flood = flood
        self._metrics = metrics
        self._host_names = HostNames(store)
        self._clock = clock
        # token hash -> (when found, by `clock`; what was found), oldest first.
        self._links: OrderedDict[str, tuple[float, LinkFound]] = OrderedDict()
        # token hash -> [(until when by the pipeline's clock, cookie secret, admission id)]: joins
        # whose store call went unanswered (`_unanswered_call`), oldest first.
        self._unanswered: OrderedDict[str, list[tuple[float, str, str]]] = OrderedDict()

    async def locate(self, raw_token: str, client_addr: str) -> Located:
        """Find the invite and the room its meeting is in now, in one store call that also
        charges a token that leads nowhere against the address and network limits before it is
        refused. The gate asks this before the pages app sees a join link's page, so an unknown
        token costs no more than that. While the store's memory is lost, every link is refused
        alike (it may have forgotten the link as well as a ban)."""
        self.ensure_memory()
        token_hash = await self._token_hash(raw_token, client_addr)
        answer = await self._store.join_through_link(
            LinkJoin(
                token_hash,
                MAX_MOVES,
                await self._unknown_charges(client_addr),
                count_unknown=UNKNOWN_COUNTER,
            )
        )
        if isinstance(answer, LinkUnknown):
            await self._unknown(token_hash, client_addr, answer.limits)
        assert isinstance(answer, LinkFound)  # no join was asked for
        return self._remember(raw_token, token_hash, answer)

    async def _token_hash(self, raw_token: str, client_addr: str) -> str:
        try:
            return hash_token(parse_token(raw_token))
        except InviteUnknown as refused:
            await self._limiter.charge(Attempt(client_addr))
            await self._limiter.note_rejection(None, refused.code)
            raise

    async def _unknown_charges(self, client_addr: str) -> tuple[LimitCharge, ...]:
        return tuple(await self._limiter.charges(Attempt(client_addr)))

    async def _unknown(self, token_hash: str, client_addr: str, limits: RateDecision) -> NoReturn:
        """A link that leads nowhere, its address and network charged with `limits`' outcome:
        RateLimited when they refused, InviteUnknown else; counted as a rejection either way
        (toward the gate's pressure by the store call that found it, when the limits allowed
        it: a flood of made-up links costs one store call each)."""
        self._links.pop(token_hash, None)
        if not limits.allowed:
            await self._limiter.refuse(Attempt(client_addr), limits)
        refused = InviteUnknown()
        self._metrics.rejections.inc(reason=refused.code)
        raise refused

    def _remember(self, raw_token: str, token_hash: str, found: LinkFound) -> Located:
        self._links.pop(token_hash, None)
        kept = LinkFound(found.invite, _kept_room(found.room), found.stamp)
        self._links[token_hash] = (self._clock(), kept)
        while len(self._links) > MAX_KNOWN_LINKS:
            self._links.popitem(last=False)
        return Located(raw_token, token_hash, found.invite, found.room, found.stamp)

    def known_link(self, raw_token: str) -> Located | None:
        """What this replica last found the join link `raw_token` to lead to, if anything; no
        store call. The invite's uses and the room may have changed since: a join through it
        (`redeem`) checks both in the store."""
        if TOKEN_SHAPE.fullmatch(raw_token) is None:
            return None
        token_hash = hash_token(raw_token)
        found = self._kept(token_hash)
        if found is None:
            return None
        return Located(raw_token, token_hash, found.invite, found.room, found.stamp, kept=True)

    def _kept(self, token_hash: str) -> LinkFound | None:
        """What this replica found `token_hash` to lead to within KNOWN_LINK_SECONDS, if
        anything; an older entry is dropped (and every older one before it)."""
        horizon = self._clock() - KNOWN_LINK_SECONDS
        while self._links:
            oldest = next(iter(self._links.values()))
            if oldest[0] > horizon:
                break
            self._links.popitem(last=False)
        kept = self._links.get(token_hash)
        return None if kept is None else kept[1]

    async def _locate(
        self, raw_token: str, client_addr: str, located: Located | None
    ) -> tuple[str, Invite, Room]:
        if located is None or located.token != raw_token:
            located = await self.locate(raw_token, client_addr)
        return located.token_hash, located.invite, located.room

    def pseudonym(self, kind: str, subject: str) -> str:
        """A stable identity that names nobody outside this deployment (keyed hash)."""
        return pseudonym(self._pseudonym_key, kind, subject)

    async def preview(
        self, raw_token: str, client_addr: str, now: float, located: Located | None = None
    ) -> tuple[Invite, Room]:
        """The invite behind a join link and its room, if it can still be used; counts no use,
        and is not charged against the invite's limit either (a look is not a use: link
        previewers and reloads must not close the link to its holder), only against the
        address's, the network's, the room's and the gate's. `located`: what `locate` found
        for this request already."""
        token_hash, invite, room = await self._locate(raw_token, client_addr, located)
        await self._limiter.charge(Attempt(client_addr, room=room.name, link=token_hash))
        if invite.revoked:
            raise InviteRevoked()
        if invite.uses >= invite.max_uses or now >= invite.expires_at:
            raise InviteExpired() if now >= invite.expires_at else InviteUsedUp()
        return invite, room

    async def redeem(
        self,
        raw_token: str,
        client_addr: str,
        now: float,
        proof: Proof | None = None,
        located: Located | None = None,
        room_language: Callable[[str], object] | None = None,
    ) -> Admitted:
        """Count one use of the invite and admit its holder to the room the meeting is in now.

        One store call when this replica knows where the link leads (it showed the link's page,
        or admitted through it before) and the room is open to the holder: the call finds the
        invite and the room again and admits only if the room's record is the one decided on.
        One store call too for a link this replica knows nothing of, when its invite carries its
        join plan and the room needs no decision here (`Store.join_plainly`); `room_language`
        is then told the room's language as soon as the store names the room, before any
        refusal (the caller's pages speak it).
        Proof-of-work (when demanded) is checked before the attempt is charged; the room's state
        before the use is counted, so a locked room or a banned identity does not burn the invite.

        A join whose one store call went unanswered (StoreUnavailable) may have been carried out
        all the same: the next join through the link on this replica, finding the invite used
        up, is handed that admission if the store holds it (`UNANSWERED_SECONDS`).
        """
        try:
            return await self._redeem(raw_token, client_addr, now, proof, located, room_language)
        except InviteUsedUp:
            admitted = await self._unanswered_join(hash_token(raw_token), now)
            if admitted is None:
                raise
            return admitted

    async def _redeem(
        self,
        raw_token: str,
        client_addr: str,
        now: float,
        proof: Proof | None,
        located: Located | None,
        room_language: Callable[[str], object] | None,
    ) -> Admitted:
        self.ensure_memory()
        if located is not None and located.token == raw_token:
            found: LinkFound | None = located.found
            token_hash = located.token_hash
            # Whether `found` was read for this join (else it is what this replica kept).
            fresh = not located.kept
        else:
            token_hash = await self._token_hash(raw_token, client_addr)
            found = self._kept(token_hash)
            fresh = found is None
        if found is None:
            plain = await self._join_plainly(
                raw_token, token_hash, client_addr, now, room_language or _ignore
            )
            if isinstance(plain, Admitted):
                return plain
            found = plain
        checked = False
        tries = 1
        while True:
            invite, room = found.invite, found.room
            # Asked again whenever the room's record changed under this join (a host may have
            # turned proof-of-work on): a proof given was checked once, for the first room.
            if not checked or proof is None:
                await self._flood.check(proof, client_addr=client_addr, room=room, now=now)
                checked = True
            verified = invited(invite)
            self._limiter.room_seen(room.name, token_hash)
            attempt = Attempt(
                client_addr,
                room=room.name,
                identity=self.identity_of(verified),
                invite=invite.id,
                link=token_hash,
            )
            decision = decide(room.policy, verified)
            role = (
                None if decision.verdict is Verdict.REFUSE else self._unless_banned(room, decision)
            )
            if not isinstance(role, Role) and not fresh:
                # Not open to the holder as this replica kept the room: as it is now, then.
                found, fresh = (await self.locate(raw_token, client_addr)).found, True
                continue
            if not isinstance(role, Role):
                # Refused by the room's policy, its lock or lockdown, or sent to its lobby: step
                # by step, as on every other path.
                await self._limiter.charge(attempt)
                role = await self.admissible(verified, room, client_addr, now)
                await self._store.redeem_invite(token_hash, now)
                return await self._admit(verified, role, room, client_addr, now)
            # The last try, should the room keep changing, expects nothing: the invite's join on
            # the room last found, as before one call did it all.
            expect = tries < LINK_TRIES
            joined = await self._join(verified, role, found, token_hash, attempt, now, expect)
            if isinstance(joined, Admitted):
                return joined
            # The room changed since this replica read it: decided again on the room as it is.
            found, fresh = self._remember(raw_token, token_hash, joined).found, True
            tries += 1

    async def _join_plainly(
        self,
        raw_token: str,
        token_hash: str,
        client_addr: str,
        now: float,
        room_language: Callable[[str], object],
    ) -> Admitted | LinkFound:
        """A join through a link this replica knows nothing of, in one store call when the
        invite carries its join plan and the room needs no decision here
        (`Store.join_plainly`): admitted then, or refused as the step-by-step join refuses.
        Else where the link leads (LinkFound), for the join to go on as through a link looked
        up (nothing was charged)."""
        rule = await self._flood.room_rule()
        if rule is True:
            located = await self.locate(raw_token, client_addr)
            room_language(located.room.language)
            return located.found
        cookie_secret = secrets.token_urlsafe(32)
        blank = Admission(
            id=admission_id_for(cookie_secret),
            room="",
            identity="",
            name="",
            role=Role.ATTENDEE,
            via="",
            created_at=now,
            expires_at=now + self._ttl,
        )
        # The address's and network's charges: an unknown link is charged them too.
        address_charges = await self._unknown_charges(client_addr)
        plain = PlainJoin(
            token_hash=token_hash,
            max_moves=MAX_MOVES,
            unknown_charges=address_charges,
            count_unknown=UNKNOWN_COUNTER,
            now=now,
            address_charges=address_charges,
            rates=self._limiter.plain_rates(),
            varied_rooms=self._limiter.varied_rooms(),
            pressure=rule if isinstance(rule, tuple) else None,
            admission=blank,
            key=self._key_fingerprint,
        )
        answer = await self._unanswered_call(
            token_hash, cookie_secret, blank.id, self._store.join_plainly(plain)
        )
        if isinstance(answer, LinkUnknown):
            await self._unknown(token_hash, client_addr, answer.limits)
        if isinstance(answer, LinkFound):
            room_language(answer.room.language)
            return self._remember(raw_token, token_hash, answer).found
        room_language(answer.language)
        if answer.invite_refusal is not None:
            raise answer.invite_refusal
        self._limiter.room_seen(answer.room, token_hash)
        attempt = Attempt(
            client_addr,
            room=answer.room,
            identity=answer.identity,
            invite=answer.invite_id,
            link=token_hash,
        )
        if answer.banned:
            await self._limiter.note_rejection(answer.room, AdmissionBanned.code)
            raise AdmissionBanned()
        if not answer.limits.allowed:
            await self._limiter.refuse(attempt, answer.limits)
        if answer.admission is not None:
            self._metrics.admissions.inc(via=Path.INVITE.value)
            return Admitted(cookie_secret=cookie_secret, admission=answer.admission)
        # Every name of the plan is held: the next numbers, step by step, on the room as it is
        # now (the limits are charged already).
        found = (await self.locate(raw_token, client_addr)).found
        invite = found.invite
        verified = invited(invite)
        joined = await self._join(
            verified, invite.role, found, token_hash, attempt, now, expect=False, first_step=False
        )
        assert isinstance(joined, Admitted)  # nothing was expected
        return joined

    async def _join(
        self,
        verified: VerifiedIdentity,
        role: Role,
        found: LinkFound,
        token_hash: str,
        attempt: Attempt,
        now: float,
        expect: bool,
        first_step: bool = True,
    ) -> Admitted | LinkFound:
        """Admit the holder of the link's invite as `role` unless banned, in one store step: the
        limits, the ban, the invite's use, the name and the admission (`Store.join_by_invite`);
        with `expect`, through `Store.join_through_link`, only while the link leads to what it
        `found` (else LinkFound: where it leads now). Without `first_step`, the first claim
        was made already (by `Store.join_plainly`, with the limits): from the next on."""
        self.ensure_memory()
        room = found.room
        expected = found if expect else None
        invite_id = verified.subject
        cookie_secret = secrets.token_urlsafe(32)
        admission = Admission(
            id=admission_id_for(cookie_secret),
            room=room.name,
            identity=self.identity_of(verified),
            name="",
            role=role,
            via=via_of(verified),
            created_at=now,
            expires_at=now + self._ttl,
        )
        # The one step needs the names it may claim, so the names kept for the room's hosts are
        # read before the limits are charged (a replica reads them once in 5 s a room).
        batches = await self._name_choices(verified, role, room, now, attempt.client_addr)
        charges: tuple[LimitCharge, ...] = ()
        if first_step:
            charges = tuple(await self._limiter.charges(attempt))
        else:
            batches = islice(batches, 2, None)
            expected = None
        # Two batches a step: the name as given and the first numbers are one round trip.
        while step := list(islice(batches, 2)):
            claim = NameClaim(
                holder=admission.id,
                shapes=tuple(shape for batch in step for shape in batch.shapes),
                expires_at=admission.expires_at,
                host_shape=step[0].host_shape,
                host=step[0].host,
                first_yields_to_host=step[0].yields_to_host,
            )
            join = InviteJoin(
                token_hash=token_hash,
                invite_id=invite_id,
                now=now,
                charges=charges,
                ban_scope=room.ban_scope,
                claim=claim,
                names=tuple(name for batch in step for name in batch.names),
                admission=admission,
            )
            try:
                joined = await self._unanswered_call(
                    token_hash,
                    cookie_secret,
                    admission.id,
                    self._join_step(join, expected, attempt.client_addr),
                )
            except AdmissionBanned as refused:
                await self._limiter.note_rejection(room.name, refused.code)
                raise
            if isinstance(joined, LinkFound):
                return joined
            if not joined.limits.allowed:
                await self._limiter.refuse(attempt, joined.limits)
            if joined.admission is not None:
                self._metrics.admissions.inc(via=verified.path.value)
                return Admitted(cookie_secret=cookie_secret, admission=joined.admission)
            # Every name so far is held; the next numbers. The limits are charged already, and
            # the link's room is the one expected.
            charges, expected = (), None
        self._name_refused(room.name, attempt.client_addr, TOO_MANY_LOOK_ALIKES)
        raise InvalidInput(N_("This name cannot be used in this room right now."))

    async def _unanswered_call(
        self, token_hash: str, cookie_secret: str, admission_id: str, call: Awaitable[_T]
    ) -> _T:
        """`call`'s answer; when it is StoreUnavailable and the store was not known to be down
        (then nothing is sent), the admission it asked for is kept for `_unanswered_join`: the
        store may have written it before its answer was lost."""
        sent = self._store.health.up
        try:
            return await call
        except StoreUnavailable:
            if sent:
                kept = self._unanswered.pop(token_hash, [])
                now = self._clock()
                kept = [entry for entry in kept if entry[0] > now]
                kept.append((now + UNANSWERED_SECONDS, cookie_secret, admission_id))
                self._unanswered[token_hash] = kept[-MAX_UNANSWERED_PER_LINK:]
                while len(self._unanswered) > MAX_UNANSWERED:
                    self._unanswered.popitem(last=False)
            raise

    async def _unanswered_join(self, token_hash: str, now: float) -> Admitted | None:
        """The admission a join through this link lately asked the store for without an
        answer, if the store holds it and it is live: handed out once, to whoever holds the
        link (the capability it was asked with)."""
        for until, cookie_secret, admission_id in self._unanswered.pop(token_hash, []):
            if self._clock() >= until:
                continue
            admission = await self._store.get_admission(admission_id)
            if admission is not None and admission.is_live(now):
                self._metrics.admissions.inc(via=Path.INVITE.value)
                return Admitted(cookie_secret=cookie_secret, admission=admission)
        return None

    async def _join_step(
        self, join: InviteJoin, expected: LinkFound | None, client_addr: str
    ) -> InviteJoined | LinkFound:
        if expected is None:
            return await self._store.join_by_invite(join)
        answer = await self._store.join_through_link(
            LinkJoin(
                join.token_hash,
                MAX_MOVES,
                await self._unknown_charges(client_addr),
                expected=expected,
                join=join,
                count_unknown=UNKNOWN_COUNTER,
            )
        )
        if isinstance(answer, LinkUnknown):
            await self._unknown(join.token_hash, client_addr, answer.limits)
        return answer

    async def held_through(
        self,
        raw_token: str,
        cookie_secret: str | None,
        client_addr: str,
        now: float,
        located: Located | None = None,
    ) -> Admission | None:
        """The live admission this browser's cookie names, if it came in through this join
        link's invite and is for the room the meeting is in now: the holder re-opening their
        own link once it is used up or expired goes back in (as a ticket refresh would let
        them), where another browser is refused. None otherwise.

        AdmissionRevoked when the cookie names an admission made through this link's invite
        that was removed before it expired (by a host, the wire guard or a lockdown: an
        invite's admission is never replaced): that browser does not get back in by another
        use of a multi-use link. A browser without the cookie is not recognised."""
        if not cookie_secret or COOKIE_SECRET_SHAPE.fullmatch(cookie_secret) is None:
            return None
        _, invite, room = await self._locate(raw_token, client_addr, located)
        if invite.revoked:
            return None
        self.ensure_memory()
        admission = await self._store.get_admission(admission_id_for(cookie_secret))
        if admission is None or now >= admission.expires_at:
            return None
        if admission.via != via_of(invited(invite)):
            return None
        if admission.revoked:
            # Whichever room of the meeting it was removed from: a move leaves it behind.
            raise AdmissionRevoked()
        if admission.room != room.name:
            return None
        return admission

    async def charge_address(self, client_addr: str, room: str | None = None) -> None:
        """Charge a look that leads to no invite yet (a room's gate page) against the address's
        and the network's limits; RateLimited when they are out. `room`, the name the request
        gives, is not charged (the limits do not tell which rooms exist): a refusal goes in its
        evidence if the room is known to exist (`room_seen`)."""
        await self._limiter.charge(Attempt(client_addr, named_room=room))

    def room_seen(self, room: str) -> None:
        """Note that the room exists (looked up): refusals naming it go in its evidence."""
        self._limiter.room_seen(room)

    def identity_of(self, verified: VerifiedIdentity) -> str:
        return self.pseudonym(verified.path.value, verified.subject)

    async def admissible(
        self,
        verified: VerifiedIdentity,
        room: Room,
        client_addr: str,
        now: float,
        *,
        approved: bool = False,
    ) -> Role:
        """May `verified` enter `room` now, and as which role? Raises the refusal: NotAllowed,
        AdmissionBanned, RoomLocked, or LobbyRequired when a host must approve first (not when
        a host already `approved`). Refusals count toward the room's pressure."""
        self.ensure_memory()
        try:
            decision = decide(room.policy, verified)
            if decision.verdict is Verdict.REFUSE:
                raise NotAllowed()
            if await self._store.is_banned(room.ban_scope, self.identity_of(verified), now):
                raise AdmissionBanned()
            if approved:
                return decision.role
            role = self._unless_banned(room, decision)
            if isinstance(role, Role):
                return role
            raise LobbyRequired(verified, room.name) if role is LobbyRequired else RoomLocked()
        except LobbyRequired:
            raise
        except MeetgateError as refused:
            await self._limiter.note_rejection(room.name, refused.code)
            raise

    @staticmethod
    def _unless_banned(
        room: Room, decision: Decision
    ) -> Role | type[LobbyRequired] | type[RoomLocked]:
        """Who someone the room's policy lets in (`decision`) enters `room` as when no ban
        holds them, or what turns them away then."""
        if decision.role is Role.HOST:
            return decision.role
        # A lockdown sends everyone but hosts through the lobby; a lock queues them there
        # when the room has one, and turns them away when it has not.
        if room.approval_required or decision.verdict is Verdict.LOBBY:
            return LobbyRequired
        if room.locked:
            return LobbyRequired if room.policy.lobby else RoomLocked
        return decision.role

    async def enter(
        self,
        verified: VerifiedIdentity,
        room: Room,
        client_addr: str,
        now: float,
        *,
        approved: bool = False,
    ) -> Admitted:
        """The end every admission path shares: policy, ban, lock and lobby, then admission."""
        role = await self.admissible(verified, room, client_addr, now, approved=approved)
        return await self._admit(verified, role, room, client_addr, now)

    async def _admit(
        self, verified: VerifiedIdentity, role: Role, room: Room, client_addr: str, now: float
    ) -> Admitted:
        cookie_secret = secrets.token_urlsafe(32)
        admission_id = admission_id_for(cookie_secret)
        expires_at = now + self._ttl
        # Before the name is claimed: the earlier admission's claim ends with it, so the person
        # keeps their own name rather than "Name (2)".
        await self._replace_earlier(verified, room.name, now)
        name = await self._shown_name(
            verified, role, room, admission_id, expires_at, now, client_addr
        )
        admission = Admission(
            id=admission_id,
            room=room.name,
            identity=self.identity_of(verified),
            name=name,
            role=role,
            via=via_of(verified),
            created_at=now,
            expires_at=expires_at,
        )
        await self._store.add_admission(admission)
        self._metrics.admissions.inc(via=verified.path.value)
        await self._seen(verified, room, now)
        return Admitted(cookie_secret=cookie_secret, admission=admission)

    async def _seen(self, verified: VerifiedIdentity, room: Room, now: float) -> None:
        """A proven address of someone admitted to a room that takes registrations, or one of a
        series, is "seen before" there from now on (as keyed hashes only)."""
        proven = verified.email_verified or verified.path is Path.EMAIL
        if self._registrations is None or not verified.email or not proven:
            return
        if room.registration or room.series:
            # Only a hint for hosts: a store that fails here does not undo the admission.
            with contextlib.suppress(StoreUnavailable):
                await self._registrations.remember(room, verified.email, now)

    async def _replace_earlier(self, verified: VerifiedIdentity, room: str, now: float) -> None:
        """A person who signs in again (OpenID Connect, an e-mail code) to a room they are still
        admitted to replaces their admission there: the earlier ones are revoked and their
        connections cut on every replica, so one identity is one participant. Not for invites:
        an invite's identity is the invite, which an n-use invite shares among its holders (the
        same browser opening its own link again goes back in with its admission instead, see
        `held_through`); not for the lobby's typed names, which prove no identity."""
        if verified.path not in (Path.OIDC, Path.EMAIL):
            return
        identity = self.identity_of(verified)
        for earlier in await self._store.list_admissions(room):
            if earlier.identity == identity and earlier.is_live(now):
                # Why, for that browser's next page or ticket (`from_cookie`): kept as long as
                # the admission would have lived, and no longer.
                ttl = max(earlier.expires_at - now, 1.0)
                await self._store.put_value(replaced_key(earlier.id), "1", ttl)
                await self._store.revoke_admission(earlier.id)
                await Cut(earlier.id, SIGNED_IN_AGAIN).send(self._store)

    async def _shown_name(
        self,
        verified: VerifiedIdentity,
        role: Role,
        room: Room,
        admission_id: str,
        expires_at: float,
        now: float,
        client_addr: str,
    ) -> str:
        """The verified name as the room will see it, claimed in the store for the admission
        `admission_id`: unique up to look-alikes, guests marked, and a look-alike of a host's
        name (a host in the room, or one holding a host invite to it) only with a number
        Meetgate chose. One atomic claim decides, so look-alikes racing in cannot both win.
        """
        choices = await self._name_choices(verified, role, room, now, client_addr)
        try:
            return await claim_shown_name(self._store, room.name, choices, admission_id, expires_at)
        except InvalidInput:
            self._name_refused(room.name, client_addr, TOO_MANY_LOOK_ALIKES)
            raise

    async def _name_choices(
        self, verified: VerifiedIdentity, role: Role, room: Room, now: float, client_addr: str
    ) -> Iterator[NameChoices]:
        reserved = (
            frozenset() if role is Role.HOST else await self._host_names.reserved(room.name, now)
        )
        guest = verified.guest and role is not Role.HOST
        if reserved and self._limiter.evidence is not None:
            with contextlib.suppress(InvalidInput):
                if host_shape(normalise(verified.name)) in reserved:
                    # Shown only with a number Meetgate chose: an attempt at a host's name.
                    self._name_refused(room.name, client_addr, LOOKS_LIKE_A_HOST)
        return name_choices(verified.name, role=role, guest=guest, reserved=reserved)

    def _name_refused(self, room: str, client_addr: str, reason: str) -> None:
        """Record in the room's evidence that a name was refused, by the network it came from."""
        evidence = self._limiter.evidence
        if evidence is not None:
            network = self._limiter.addresses.known_network(client_addr) or UNKNOWN_NETWORK
            evidence.refused_name(room, network, reason)

    def ensure_memory(self) -> None:
        """Refuse (StoreMemoryLost) while the store is known to have lost its memory: a ban or
        a revocation it forgot would let someone in. Running meetings are not asked this; new
        joins, ticket refreshes and new signalling sessions are."""
        if self._store.continuity.lost:
            raise StoreMemoryLost()

    async def for_new_ticket(self, cookie_secret: str | None, now: float) -> Admission:
        """`from_cookie` for a ticket refresh: refused too while the store's memory is lost."""
        self.ensure_memory()
        return await self.from_cookie(cookie_secret, now)

    async def from_cookie(self, cookie_secret: str | None, now: float) -> Admission:
        """The live admission a cookie names; NotAdmitted or AdmissionRevoked otherwise."""
        if not cookie_secret or COOKIE_SECRET_SHAPE.fullmatch(cookie_secret) is None:
            raise NotAdmitted()
        return await self.live(admission_id_for(cookie_secret), now, why=True)

    async def live(self, admission_id: str, now: float, *, why: bool = False) -> Admission:
        """The live admission `admission_id`; NotAdmitted or AdmissionRevoked otherwise. `why`
        (a page or a ticket, which the person reads): AdmissionReplaced for one replaced by its
        person signing in again, at one store read more; never on the gate's hot path, where
        a refused request must cost one read."""
        admission = await self._store.get_admission(admission_id)
        if admission is None or now >= admission.expires_at:
            raise NotAdmitted()
        if admission.revoked:
            if why and await self._replaced(admission):
                raise AdmissionReplaced()
            raise AdmissionRevoked()
        return admission

    async def _replaced(self, admission: Admission) -> bool:
        """Whether a revoked admission was replaced by its person signing in again
        (`_replace_earlier` marks it so, beside the revocation): no host removed it."""
        if not admission.via.startswith(REPLACEABLE_VIA):
            return False
        return await self._store.get_value(replaced_key(admission.id)) is not None
