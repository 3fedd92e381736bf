"""Host actions on a room. Each checks that the actor is a live host of that room (or the admin,
through the admin API), changes the store, tells every replica which admissions to cut (pub/sub),
and leaves an audit entry.

No HTTP here: the dashboard routes, the admin API and the tests call these with plain values.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

from gateway.admission.lobby import Lobby, LobbyRequest, LobbyState
from gateway.admission.meeting import meeting_audit
from gateway.admission.names import shown_claim, skeleton, strip_markers
from gateway.admission.policy import policy_version
from gateway.admission.rooms import current_room, validate_room_name
from gateway.cuts import Cut, RulesChanged
from gateway.errors import InvalidInput, NotHost, PolicyChanged, RoomMoved, RoomNotFound
from gateway.evidence.entries import Kind, moment
from gateway.evidence.recorder import EvidenceRecorder
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import (
    CHAT_BURST_MAX,
    CHAT_BYTES_MAX,
    CHAT_BYTES_MIN,
    CHAT_PER_10S_MAX,
    ROOM_LANGUAGES,
    STRIKES_MAX,
    Admission,
    AuditEntry,
    AuditFacts,
    AuditKind,
    ChatLimits,
    Invite,
    PolicyShape,
    Role,
    Room,
    RoomPolicy,
)


@dataclass(frozen=True, slots=True)
class Admin:
    """The admin, acting through the admin API (`meetgate room …`): a host of every room, with
    no admission of its own."""


ADMIN = Admin()
# Who the room's log says acted, when the admin did.
ADMIN_NAME = "admin"
# What the evidence's pseudonym of the admin is made from (per room, as a host's is): no
# identity's pseudonym is this.
ADMIN_EVIDENCE_ACTOR = "the admin API"

# Who does a host action: a host, by their admission, or the admin.
Actor = Admission | Admin

# An admission's id: 64 lowercase hex digits. A `who` of this shape (in either case: an id
# pasted in upper case is still the id) is an id and nothing else: a shown name may not take it
# (gateway/admission/names.py refuses such names), and even one admitted before that rule cannot
# be taken for the admission whose id it copies.
ADMISSION_ID_SHAPE = re.compile(r"[0-9a-f]{64}")

# How often, at most, the admin's readings of one room's roster are logged (per replica: each
# keeps its own clock of the last entry). `watch meetgate room roster` must not push the hosts'
# real actions out of the dashboard's newest entries.
ROSTER_LOG_SECONDS = 300.0


def name_matches(wanted: str, shown: str) -> bool:
    """Does `wanted`, as an admin types it, name the participant shown as `shown`? Look-alikes
    and Meetgate's markers count: "Ada" names "Ada", "ADA (2)" and "Ada (guest)"; "Ada (2)" names
    only "Ada (2)"."""
    typed = skeleton(wanted)
    return bool(typed) and typed in (skeleton(shown), skeleton(strip_markers(shown)))


def as_id(who: str) -> str | None:
    """The admission id `who` is, as the store writes ids (lower case); None if `who` is not
    of an id's shape."""
    wanted = who.strip().lower()
    return wanted if ADMISSION_ID_SHAPE.fullmatch(wanted) else None


def reaches(who: str, admission: Admission) -> bool:
    """May the admin's `who` act on `admission`? An attendee by any name that names them; a
    host only by their id or their shown name exactly: a troll who joins as a look-alike of the
    host's name must not get the host removed by whoever types the name as they read it."""
    if admission.role is not Role.HOST:
        return True
    return as_id(who) == admission.id or who.strip() == admission.name


def fresh_room_name(previous: str) -> str:
    # 96 random bits; the readable start helps hosts, the rest makes it unguessable.
    base = (previous.split("--")[0])[:30].rstrip("-_") or "room"
    return f"{base}--{secrets.token_hex(12)}"


def check_chat_limits(limits: ChatLimits) -> None:
    """InvalidInput, saying the bounds, for chat limits no room may have."""
    if not 0 <= limits.per_10s <= CHAT_PER_10S_MAX:
        raise InvalidInput(
            N_("Messages per 10 seconds: 0 (the gate's default) to {most}."),
            most=CHAT_PER_10S_MAX,
        )
    if not 0 <= limits.burst <= CHAT_BURST_MAX:
        raise InvalidInput(
            N_("Messages at once: 0 (the gate's default) to {most}."), most=CHAT_BURST_MAX
        )
    if limits.max_bytes != 0 and not CHAT_BYTES_MIN <= limits.max_bytes <= CHAT_BYTES_MAX:
        raise InvalidInput(
            N_("Longest message: 0 (the gate's default) or {least} to {most} bytes."),
            least=CHAT_BYTES_MIN,
            most=CHAT_BYTES_MAX,
        )
    if limits.strikes is not None and not 0 <= limits.strikes <= STRIKES_MAX:
        raise InvalidInput(
            N_("Refused messages before removal: 0 (never) to {most}."), most=STRIKES_MAX
        )


def evidence_limits(limits: ChatLimits) -> dict[str, object]:
    """A room's chat limits as the evidence writes them: each a number, or null for the
    gate's default."""
    return {
        "per_10s": limits.per_10s or None,
        "burst": limits.burst or None,
        "max_bytes": limits.max_bytes or None,
        "strikes": limits.strikes,
    }


async def rules_changed(store: Store, room_name: str) -> None:
    """Every replica's gate re-reads the room's chat rules now (gateway/proxy/room_rules.py)."""
    await RulesChanged(room_name).send(store)


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    """What the hosts set of a room's meeting (issue 19): whether it takes registrations, the
    domains whose confirmed addresses are approved at once, and its time (UTC epoch seconds,
    None unknown), which the invitations' calendar entry and the registrations' expiry use."""

    registration: bool
    auto_approve_domains: tuple[str, ...]
    starts_at: float | None
    ends_at: float | None

    @classmethod
    def of(cls, room: Room) -> MeetingSettings:
        return cls(room.registration, room.auto_approve_domains, room.starts_at, room.ends_at)

    def applied_to(self, room: Room) -> Room:
        return replace(
            room,
            registration=self.registration,
            auto_approve_domains=self.auto_approve_domains,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
        )


# Moves followed back from a room to the one its meeting began in, at most.
MAX_MOVES_FOLLOWED = 16


class HostDesk:
    def __init__(
        self, store: Store, lobby: Lobby | None = None, evidence: EvidenceRecorder | None = None
    ) -> None:
        """`evidence`: where removals, bans, locks, lockdowns, moves and chat rules are
        recorded (None: nowhere)."""
        self._store = store
        self._lobby = lobby
        self._evidence = evidence
        # Room -> when this replica last logged the admin reading its roster.
        self._roster_logged: dict[str, float] = {}

    def _record(
        self,
        actor: Actor,
        room: str,
        kind: Kind,
        whom: str | None = None,
        name: str | None = None,
        **values: object,
    ) -> None:
        """Record in `room`'s evidence what `actor` did (to the admission `whom`, whose shown
        `name` only if the actor chose to record it)."""
        evidence = self._evidence
        if evidence is None:
            return
        fields: dict[str, object] = {"actor": evidence.pseudonyms.host(room, _identity(actor))}
        if whom is not None:
            fields["target"] = self._whom(room, whom)
        if name:
            fields["name"] = name
        evidence.note(room, kind, {**fields, **values})

    async def _authorise(
        self, actor: Actor, room_name: str, now: float, *, moved_ok: bool = False
    ) -> Room:
        """The room, if `actor` may act on it. A host acts only on their own room, which has
        not moved (their admission moves with the meeting). The admin may name any room, but
        not one whose meeting moved away (RoomMoved, naming the room it is in now), unless
        `moved_ok`: reading its log, lifting a ban made there."""
        if isinstance(actor, Admission) and (
            actor.role is not Role.HOST or actor.room != room_name or not actor.is_live(now)
        ):
            raise NotHost()
        room = await self._store.get_room(room_name)
        if room is None:
            raise RoomNotFound()
        if isinstance(actor, Admin) and room.moved_to is not None and not moved_ok:
            now_in = await current_room(self._store, room_name)
            if now_in is None:
                # The room it moved to (or one after it) was deleted: naming it as where the
                # meeting is would send the admin to a room that does not exist.
                raise RoomMoved(
                    N_(
                        "The meeting in this room moved to room {room}, which has since been"
                        " deleted."
                    ),
                    room=room.moved_to,
                )
            raise RoomMoved(room=now_in.name)
        return room

    def _whom(self, room: str, admission_id: str) -> str:
        """Whom an audit entry is about, as the room's evidence names them (a keyed hash of the
        admission, of this room only): never the identity's pseudonym, which is the same in
        every room and would let the hosts of two rooms find the same person in both. "" when
        there is no evidence recorder, and so no key."""
        if self._evidence is None:
            return ""
        return self._evidence.pseudonyms.admission(room, admission_id)

    async def _audit(
        self,
        actor: Actor,
        room: str,
        action: str,
        now: float,
        target: str = "",
        facts: AuditFacts | None = None,
        detail: str = "",
    ) -> None:
        # Values, not words: the dashboard says them in the language of whoever reads the log.
        await self._store.append_audit(
            AuditEntry(
                at=now,
                room=room,
                # The admin has no identity: "" (as the admin API's other entries).
                actor=actor.identity if isinstance(actor, Admission) else "",
                actor_name=actor.name if isinstance(actor, Admission) else ADMIN_NAME,
                action=action,
                target=target,
                detail=detail,
                facts=facts,
            )
        )

    async def _cut(self, admission_id: str, reason: str) -> None:
        await Cut(admission_id, reason).send(self._store)

    async def _log_roster_read(self, actor: Actor, room_name: str, now: float) -> None:
        """The admin read the room's roster (or looked someone up in it): logged, so the hosts
        see that the admin looked (docs/privacy.md), at most once per room in
        ROSTER_LOG_SECONDS on this replica."""
        if not isinstance(actor, Admin):
            return
        last = self._roster_logged.get(room_name)
        if last is not None and 0 <= now - last < ROSTER_LOG_SECONDS:
            return
        await self._audit(actor, room_name, "view roster", now)
        # Forget the rooms whose time is up, so the map holds only recently read rooms.
        self._roster_logged = {
            room: at for room, at in self._roster_logged.items() if now - at < ROSTER_LOG_SECONDS
        }
        self._roster_logged[room_name] = now

    async def roster(self, actor: Actor, room_name: str, now: float) -> list[Admission]:
        """Who is in the meeting now. The admin's reading is logged (`_log_roster_read`)."""
        await self._authorise(actor, room_name, now)
        await self._log_roster_read(actor, room_name, now)
        admissions = await self._store.list_admissions(room_name)
        return sorted(
            (a for a in admissions if a.is_live(now)),
            key=lambda a: (a.role != Role.HOST, a.created_at),
        )

    async def participant(
        self, actor: Actor, room_name: str, admission_id: str, now: float
    ) -> Admission | None:
        """One live admission of this room, looked up by id (not by listing the room)."""
        await self._authorise(actor, room_name, now)
        admission = await self._store.get_admission(admission_id)
        if admission is None or admission.room != room_name or not admission.is_live(now):
            return None
        return admission

    async def room(self, actor: Actor, room_name: str, now: float) -> Room:
        return await self._authorise(actor, room_name, now, moved_ok=True)

    async def current(self, actor: Actor, room_name: str, now: float) -> Room:
        """The room, if `actor` may change it: for the admin, RoomMoved if its meeting moved."""
        return await self._authorise(actor, room_name, now)

    async def named(
        self, actor: Actor, room_name: str, who: str, now: float, *, reading: bool = True
    ) -> list[Admission]:
        """The live admissions of this room that `who` names: the one whose id it is, else
        those whose shown name it names (`name_matches`), newest first. Several: the caller
        asks which one; none: nobody in the room is `who`. A host is among them even when only
        a look-alike names them: the caller refuses to act on one that `who` does not
        `reach`. `reading`: the admin is shown the answer, a reading of the roster (logged as
        `roster`'s); not when it only finds whom an action is on (the action is logged)."""
        await self._authorise(actor, room_name, now)
        if reading:
            await self._log_roster_read(actor, room_name, now)
        live = [a for a in await self._store.list_admissions(room_name) if a.is_live(now)]
        return _named(who, live)

    async def moved_from(self, host: Admission, room_name: str, now: float) -> Room:
        """The room `room_name` the meeting `host` hosts moved away from (its moves followed to
        the host's room), if the host was in the meeting before it moved here (admitted before
        this room was made, so moved with it: they know the old room's unguessable name); its
        evidence is theirs to download. NotHost else."""
        current = await self._authorise(host, host.room, now)
        if host.created_at >= current.created_at:
            raise NotHost()
        old = await self._store.get_room(room_name)
        step = old
        for _ in range(MAX_MOVES_FOLLOWED):
            if step is None or not step.moved_to:
                break
            if step.moved_to == host.room:
                assert old is not None
                return old
            step = await self._store.get_room(step.moved_to)
        raise NotHost()

    async def revoke(
        self,
        actor: Actor,
        room_name: str,
        admission_id: str,
        now: float,
        *,
        record_name: bool = False,
    ) -> bool:
        """Revoke one admission of this room. False (and nothing done) if it is unknown, of
        another room, or already gone; revoking twice is harmless. `record_name`: the evidence
        keeps the shown name too."""
        await self._authorise(actor, room_name, now)
        if isinstance(actor, Admission) and admission_id == actor.id:
            raise InvalidInput(N_("You cannot remove yourself; leave the meeting instead."))
        target = await self._store.get_admission(admission_id)
        if target is None or target.room != room_name or not target.is_live(now):
            return False
        await self._store.revoke_admission(admission_id)
        await self._cut(admission_id, "revoked")
        shown = target.name if record_name else None
        self._record(actor, room_name, Kind.REMOVAL, admission_id, shown)
        facts = AuditFacts(AuditKind.NAME, name=target.name)
        whom = self._whom(room_name, admission_id)
        await self._audit(actor, room_name, "revoke", now, target=whom, facts=facts)
        return True

    async def ban(
        self,
        actor: Actor,
        room_name: str,
        admission_id: str,
        until: float | None,
        now: float,
        *,
        record_name: bool = False,
    ) -> bool:
        """Revoke every admission of the target's identity in this room and bar it from coming
        back until `until` (None: for good). False if the admission is unknown to this room.
        `record_name`: the evidence keeps the shown name too."""
        room = await self._authorise(actor, room_name, now)
        if isinstance(actor, Admission) and admission_id == actor.id:
            raise InvalidInput(N_("You cannot ban yourself."))
        if until is not None and until <= now:
            raise InvalidInput(N_("A ban must end in the future."))
        target = await self._store.get_admission(admission_id)
        if target is None or target.room != room_name:
            return False
        await self._store.ban_identity(room.ban_scope, target.identity, until)
        for admission in await self._store.list_admissions(room_name):
            if admission.identity == target.identity and not admission.revoked:
                await self._store.revoke_admission(admission.id)
                await self._cut(admission.id, "banned")
        ends = None if until is None else moment(until)
        shown = target.name if record_name else None
        self._record(actor, room_name, Kind.BAN, admission_id, shown, until=ends)
        facts = (
            AuditFacts(AuditKind.NAME, name=target.name)
            if until is None
            else AuditFacts(AuditKind.BANNED_UNTIL, name=target.name, until=until)
        )
        whom = self._whom(room_name, admission_id)
        await self._audit(actor, room_name, "ban", now, target=whom, facts=facts)
        return True

    async def banned(self, actor: Actor, room_name: str, who: str, now: float) -> list[Admission]:
        """The admissions of this room, their identity banned now, that `who` names (by id or
        shown name, as `named`) while their records live (until they would have expired): one
        per identity, its newest. A moved room's too: its bans hold in the rooms it moved to,
        and its banned admissions stayed behind in it."""
        room = await self._authorise(actor, room_name, now, moved_ok=True)
        admissions = await self._store.list_admissions(room_name)
        bans = await self._store.are_banned([(room.ban_scope, a.identity) for a in admissions], now)
        held = [a for a, ban in zip(admissions, bans, strict=True) if ban]
        return _named(who, held, by_identity=True)

    async def unban(self, actor: Actor, room_name: str, admission_id: str, now: float) -> bool:
        """Lift the ban on the identity of this room's admission `admission_id`: it may come
        back (through a new admission: the revoked ones stay revoked). False if the admission is
        unknown to this room or its identity is not banned."""
        room = await self._authorise(actor, room_name, now, moved_ok=True)
        target = await self._store.get_admission(admission_id)
        if target is None or target.room != room_name:
            return False
        if not await self._store.unban_identity(room.ban_scope, target.identity):
            return False
        self._record(actor, room_name, Kind.UNBAN, admission_id)
        facts = AuditFacts(AuditKind.NAME, name=target.name)
        whom = self._whom(room_name, admission_id)
        await self._audit(actor, room_name, "unban", now, target=whom, facts=facts)
        return True

    async def set_locked(self, actor: Actor, room_name: str, locked: bool, now: float) -> Room:
        """Lock: nobody new is admitted. Unlock also lifts a lockdown's approval requirement."""
        await self._authorise(actor, room_name, now)
        updated = await self._store.change_room(
            room_name,
            lambda room: replace(
                room, locked=locked, approval_required=room.approval_required and locked
            ),
        )
        await self._audit(actor, room_name, "lock" if locked else "unlock", now)
        self._record(actor, room_name, Kind.LOCK if locked else Kind.UNLOCK)
        return updated

    async def lockdown(self, actor: Actor, room_name: str, now: float) -> int:
        """Lock the room, revoke every non-host admission, require approval to come back."""
        await self._authorise(actor, room_name, now)
        # Quiet too: the hosts who stay speak, nobody who slipped back in chats.
        await self._store.change_room(
            room_name, lambda room: replace(room, locked=True, approval_required=True, quiet=True)
        )
        await rules_changed(self._store, room_name)
        removed = 0
        for admission in await self._store.list_admissions(room_name):
            if admission.role is Role.HOST or not admission.is_live(now):
                continue
            await self._store.revoke_admission(admission.id)
            await self._cut(admission.id, "lockdown")
            removed += 1
        facts = AuditFacts(AuditKind.REMOVED, count=removed)
        await self._audit(actor, room_name, "lockdown", now, facts=facts)
        self._record(actor, room_name, Kind.LOCKDOWN, removed=removed)
        return removed

    async def move(
        self, actor: Actor, room_name: str, now: float, *, to: str | None = None
    ) -> Room:
        """Continue the meeting in a fresh, unguessable room (or in the new room `to`, a valid
        room name no room has: RoomExists else). Every live admission is carried over (revoked
        and banned ones are not live) and its connections are cut, so each browser reconnects,
        is refused its old ticket and fetches a fresh one for the new room."""
        room = await self._authorise(actor, room_name, now)
        successor = Room(
            name=fresh_room_name(room.name) if to is None else validate_room_name(to),
            title=room.title,
            created_at=now,
            hosts=room.hosts,
            policy=room.policy,
            locked=room.locked,
            approval_required=room.approval_required,
            lineage=room.ban_scope,
            language=room.language,
            quiet=room.quiet,
        )
        successor = ChatLimits.of(room).applied_to(successor)
        await self._store.create_room(successor)
        # Names come along, claimed in the new room before it is reachable (names were unique
        # in the old room, so each claim finds its name free): nobody arriving through an old
        # link once the meeting has moved can take a look-alike first.
        claimed = set()
        for admission in await self._store.list_admissions(room_name):
            if admission.is_live(now):
                await self._claim_name_in(successor.name, admission)
                claimed.add(admission.id)
        await self._store.change_room(
            room_name, lambda current: replace(current, locked=True, moved_to=successor.name)
        )
        moved = 0
        for admission in await self._store.list_admissions(room_name):
            if not admission.is_live(now):
                continue
            if admission.id not in claimed:  # admitted between the first listing and the move
                await self._claim_name_in(successor.name, admission)
            if await self._store.move_admission(admission.id, successor.name) is not None:
                await self._cut(admission.id, "moved")
                moved += 1
        facts = AuditFacts(AuditKind.MOVED, count=moved)
        await self._audit(actor, room_name, "move", now, target=successor.name, facts=facts)
        if self._evidence is not None:
            # The old room's `move`, then the new room's `move in` naming it (not its name).
            self._evidence.moved(room_name, successor.name, _identity(actor), moved)
        return successor

    async def _claim_name_in(self, room_name: str, admission: Admission) -> None:
        claim = shown_claim(admission.name, admission.role, admission.id, admission.expires_at)
        await self._store.claim_name(room_name, claim)

    async def set_policy(
        self, actor: Actor, room_name: str, policy: RoomPolicy, was: str, now: float
    ) -> Room | None:
        """Replace the room's policy; it decides the next join attempt, on every replica. `was`
        is the version (`policy_version`) of the policy the host changed: PolicyChanged if the
        room's is another by now. None (and nothing done) if the room already has `policy`."""
        room = await self._authorise(actor, room_name, now)
        if policy == room.policy:
            return None

        def change(current: Room) -> Room:
            # Checked on the record being replaced: two hosts saving at once cannot both pass.
            if was != policy_version(current.policy):
                raise PolicyChanged()
            return replace(current, policy=policy)

        updated = await self._store.change_room(room_name, change)
        facts = AuditFacts(AuditKind.POLICY, policy=PolicyShape.of(policy))
        await self._audit(actor, room_name, "change policy", now, facts=facts)
        return updated

    async def set_language(
        self, actor: Actor, room_name: str, language: str, now: float
    ) -> Room | None:
        """Set the language of the room's pages for visitors who chose none (a tag of
        gateway.i18n.LANGUAGES; "" for none). None (and nothing done) if it already is."""
        room = await self._authorise(actor, room_name, now)
        if language != "" and language not in ROOM_LANGUAGES:
            raise InvalidInput(N_("Choose one of the languages offered."))
        if language == room.language:
            return None
        updated = await self._store.change_room(
            room_name, lambda current: replace(current, language=language)
        )
        facts = AuditFacts(AuditKind.LANGUAGE, language=language)
        await self._audit(actor, room_name, "change language", now, facts=facts)
        return updated

    async def set_quiet(self, actor: Actor, room_name: str, on: bool, now: float) -> Room:
        """Quiet mode: only hosts chat (attendees may still write privately to a host when the
        room's chat limits allow it). Every replica's gate applies it to the next message."""
        await self._authorise(actor, room_name, now)
        updated = await self._store.change_room(
            room_name, lambda current: replace(current, quiet=on)
        )
        await rules_changed(self._store, room_name)
        await self._audit(actor, room_name, "quiet on" if on else "quiet off", now)
        self._record(actor, room_name, Kind.QUIET_ON if on else Kind.QUIET_OFF)
        return updated

    async def set_chat_limits(
        self, actor: Actor, room_name: str, limits: ChatLimits, now: float
    ) -> Room | None:
        """Set the room's chat limits (checked: InvalidInput says the bounds). None (and
        nothing done) if it already has them."""
        room = await self._authorise(actor, room_name, now)
        check_chat_limits(limits)
        if limits == ChatLimits.of(room):
            return None
        updated = await self._store.change_room(room_name, limits.applied_to)
        await rules_changed(self._store, room_name)
        facts = AuditFacts(AuditKind.CHAT_LIMITS, limits=limits)
        await self._audit(actor, room_name, "change chat limits", now, facts=facts)
        self._record(actor, room_name, Kind.CHAT_LIMITS, limits=evidence_limits(limits))
        return updated

    async def waiting(self, actor: Actor, room_name: str, now: float) -> list[LobbyRequest]:
        """The room's lobby: who asks to be let in, oldest first."""
        await self._authorise(actor, room_name, now)
        return [] if self._lobby is None else await self._lobby.waiting(room_name, now)

    async def answer_lobby(
        self, actor: Actor, room_name: str, request_id: str, answer: LobbyState, now: float
    ) -> LobbyRequest | None:
        """Let a waiting person in (APPROVED), turn them away (DENIED), or turn them away and
        bar their identity from the meeting for good (BANNED). None if the request is unknown
        to this room, expired or already answered."""
        room = await self._authorise(actor, room_name, now)
        if self._lobby is None:
            return None
        by = actor.name if isinstance(actor, Admission) else ADMIN_NAME
        answered = await self._lobby.answer(room, request_id, answer, by, now)
        if answered is not None:
            action = {
                LobbyState.APPROVED: "approve",
                LobbyState.DENIED: "deny",
                LobbyState.BANNED: "deny and ban",
            }[answer]
            if answer is LobbyState.APPROVED:
                # That a guest was let in, not who: names kept for a month would make the log a
                # list of who attended. Names stay only on the actions against someone.
                await self._audit(actor, room_name, action, now)
            else:
                # Whom, by the lobby request (there is no admission), as the evidence names them.
                whom = f"lobby:{answered.id}"
                facts = AuditFacts(AuditKind.NAME, name=answered.name)
                target = self._whom(room_name, whom)
                await self._audit(actor, room_name, action, now, target=target, facts=facts)
                if answer is LobbyState.BANNED:
                    self._record(actor, room_name, Kind.BAN, whom, until=None)
        return answered

    async def audit(self, actor: Actor, room_name: str, now: float) -> list[AuditEntry]:
        await self._authorise(actor, room_name, now, moved_ok=True)
        return await self._store.list_audit(room_name)

    async def revoke_invite(self, actor: Actor, room_name: str, invite: Invite, now: float) -> bool:
        """Revoke one of this room's invites, logged and recorded as a removal of the invite
        (whom: the invite, as the evidence names it; the invitee's name in the log only). False
        if it is of another room or was revoked already."""
        await self._authorise(actor, room_name, now, moved_ok=True)
        if invite.room != room_name or not await self._store.revoke_invite(invite.id):
            return False
        whom = f"invite:{invite.id}"
        self._record(actor, room_name, Kind.REMOVAL, whom)
        facts = AuditFacts(AuditKind.NAME, name=invite.name)
        target = self._whom(room_name, whom)
        await self._audit(actor, room_name, "revoke", now, target=target, facts=facts)
        return True

    async def log_count(
        self,
        actor: Actor,
        room_name: str,
        action: str,
        count: int,
        now: float,
        *,
        kind: AuditKind = AuditKind.INVITATIONS,
        refused: int = 0,
    ) -> None:
        """Log in the room's audit log an action on people by how many it concerned, never
        whom: `kind` REGISTRATIONS (answered) or INVITATIONS (made, sent again, revoked), and
        how many asked for were `refused` (not answered, lines refused). Names kept with the
        log would make it a list of who was invited."""
        await self._authorise(actor, room_name, now)
        facts = AuditFacts(kind, count=count, refused=refused)
        await self._audit(actor, room_name, action, now, facts=facts)

    async def set_meeting(
        self, actor: Actor, room_name: str, meeting: MeetingSettings, now: float
    ) -> Room | None:
        """Set the room's registration and the meeting's time (`MeetingSettings`, checked by
        its maker). None (and nothing done) if the room already has them."""
        room = await self._authorise(actor, room_name, now)
        if meeting == MeetingSettings.of(room):
            return None
        updated = await self._store.change_room(room_name, meeting.applied_to)
        # As the admin's changes are logged: one entry per setting changed, with its values.
        for action, facts in meeting_audit(room, updated):
            await self._audit(actor, room_name, action, now, facts=facts)
        return updated

    async def audit_admin(
        self, room_name: str, action: str, now: float, facts: AuditFacts | None = None
    ) -> None:
        """Log in the room's audit log an admin action done outside the desk (the admin API's
        room change, registrations, invite lists), with what it did as `facts`."""
        await self._audit(ADMIN, room_name, action, now, facts=facts)


def _identity(actor: Actor) -> str:
    """What the evidence's pseudonym of `actor` is made from."""
    return actor.identity if isinstance(actor, Admission) else ADMIN_EVIDENCE_ACTOR


def _named(who: str, admissions: list[Admission], *, by_identity: bool = False) -> list[Admission]:
    """The one of `admissions` whose id is `who`, else those whose shown name `who` names,
    newest first (`by_identity`: the admissions of one identity are one person, and the newest
    of them stands for them)."""
    wanted = who.strip()
    admission_id = as_id(wanted)
    if admission_id is not None:
        # An id only: an attendee can read their own from their ticket, and a name copying
        # someone's must not draw the admin's action onto its bearer.
        return [admission for admission in admissions if admission.id == admission_id]
    found = sorted(
        (a for a in admissions if name_matches(wanted, a.name)), key=lambda a: -a.created_at
    )
    if not by_identity:
        return found
    newest: dict[str, Admission] = {}
    for admission in found:
        newest.setdefault(admission.identity, admission)
    return list(newest.values())
