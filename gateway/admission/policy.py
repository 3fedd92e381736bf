"""Per-room policy decisions: which paths a room offers, and whether a verified identity may
enter, as whom, and whether a host must approve first. Pure: values in, a decision out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.store.records import Role, RoomPolicy


class Verdict(Enum):
    ADMIT = "admit"
    LOBBY = "lobby"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    role: Role = Role.ATTENDEE
    reason: str = ""


def offered_paths(policy: RoomPolicy) -> list[Path]:
    """The ways in a room's gate page offers (an invite is used through its own link)."""
    paths = []
    if policy.oidc:
        paths.append(Path.OIDC)
    if policy.email_code:
        paths.append(Path.EMAIL)
    if policy.lobby and not (policy.oidc or policy.email_code):
        # Lobby alone: an open but moderated room, where a host sees every request.
        paths.append(Path.LOBBY)
    return paths


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def email_allowed(policy: RoomPolicy, email: str | None) -> bool:
    if not policy.allowed_emails and not policy.allowed_domains:
        return True
    if email is None:
        return False
    address = email.strip().lower()
    return address in (e.lower() for e in policy.allowed_emails) or _domain(address) in (
        d.lower().lstrip("@") for d in policy.allowed_domains
    )


def _is_host(policy: RoomPolicy, identity: VerifiedIdentity) -> bool:
    if identity.email is None or not identity.email_verified:
        return False
    return identity.email.strip().lower() in (e.lower() for e in policy.host_emails)


def decide(policy: RoomPolicy, identity: VerifiedIdentity) -> Decision:
    """May this identity enter this room, as which role, and straight away or via the lobby?"""
    if identity.path is Path.INVITE:
        # The invite itself is the policy: a host chose this person and this name.
        return Decision(Verdict.ADMIT, identity.role) if policy.invite else _refuse("invite")
    if identity.path is Path.OIDC:
        if not policy.oidc:
            return _refuse("sign-in is not a way into this room")
        if policy.oidc_providers and identity.provider not in policy.oidc_providers:
            return _refuse("this provider is not accepted for this room")
        if policy.allowed_groups and not set(policy.allowed_groups) & set(identity.groups):
            return _refuse("not in an allowed group")
    elif identity.path is Path.EMAIL:
        if not policy.email_code:
            return _refuse("e-mail codes are not a way into this room")
    elif identity.path is Path.LOBBY:
        if not policy.lobby:
            return _refuse("this room has no lobby")
        return Decision(Verdict.LOBBY)
    if identity.path in (Path.OIDC, Path.EMAIL):
        if not (identity.email_verified or identity.path is Path.EMAIL) and (
            policy.allowed_emails or policy.allowed_domains
        ):
            return _refuse("the e-mail address is not verified")
        if _is_host(policy, identity):
            return Decision(Verdict.ADMIT, Role.HOST)
        if not email_allowed(policy, identity.email):
            return _refuse("address or domain not allowed")
    if policy.lobby:
        return Decision(Verdict.LOBBY)
    return Decision(Verdict.ADMIT)


def _refuse(reason: str) -> Decision:
    return Decision(Verdict.REFUSE, reason=reason)
