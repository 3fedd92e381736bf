"""The pure policy decision without a server: which ways in a room's gate page offers, and
whether a verified identity may enter, as which role, and whether a host must approve first
(`policy.offered_paths`, `policy.decide`)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.admission.policy import Verdict, decide, offered_paths
from gateway.store.records import Role, RoomPolicy


def policy(**rules: Any) -> RoomPolicy:
    values: dict[str, Any] = {"invite": False}
    values.update(rules)
    return RoomPolicy(**values)


def invitee(role: Role = Role.ATTENDEE) -> VerifiedIdentity:
    return VerifiedIdentity(path=Path.INVITE, subject="invite-1", name="Ada", role=role)


def signed_in(
    email: str | None = "ada@uni.example",
    *,
    verified: bool = True,
    provider: str = "uni",
    groups: tuple[str, ...] = (),
) -> VerifiedIdentity:
    return VerifiedIdentity(
        path=Path.OIDC,
        subject=f"https://login.uni.example sub-{email}",
        name="Ada Lovelace",
        email=email,
        email_verified=verified,
        issuer="https://login.uni.example",
        provider=provider,
        groups=groups,
    )


def coded(email: str = "ada@uni.example") -> VerifiedIdentity:
    return VerifiedIdentity(
        path=Path.EMAIL, subject=email, name="Ada", email=email, email_verified=True
    )


def guest() -> VerifiedIdentity:
    return VerifiedIdentity(path=Path.LOBBY, subject="0" * 32, name="Gina", guest=True)


def verdict(room: RoomPolicy, who: VerifiedIdentity) -> tuple[Verdict, Role]:
    decision = decide(room, who)
    return decision.verdict, decision.role


ADMIT = (Verdict.ADMIT, Role.ATTENDEE)
AS_HOST = (Verdict.ADMIT, Role.HOST)
LOBBY = (Verdict.LOBBY, Role.ATTENDEE)
REFUSE = (Verdict.REFUSE, Role.ATTENDEE)


# What the gate page offers


@pytest.mark.parametrize(
    ("rules", "paths"),
    [
        ({"invite": True}, []),
        ({"oidc": True}, [Path.OIDC]),
        ({"email_code": True}, [Path.EMAIL]),
        ({"lobby": True}, [Path.LOBBY]),
        ({"oidc": True, "email_code": True}, [Path.OIDC, Path.EMAIL]),
        # On top of sign-in or a code, the lobby is no way in of its own: no typed name.
        ({"oidc": True, "lobby": True}, [Path.OIDC]),
        ({"email_code": True, "lobby": True, "invite": True}, [Path.EMAIL]),
        ({"invite": True, "lobby": True}, [Path.LOBBY]),
    ],
)
def test_the_gate_page_offers_exactly_the_policys_paths(
    rules: dict[str, Any], paths: list[Path]
) -> None:
    assert offered_paths(policy(**rules)) == paths


# Invites


def test_an_invite_is_its_own_permission_and_skips_the_lobby() -> None:
    room = policy(invite=True, lobby=True, allowed_domains=("uni.example",))
    assert verdict(room, invitee()) == ADMIT
    assert verdict(room, invitee(Role.HOST)) == AS_HOST


def test_an_attendee_invite_does_not_work_where_invites_are_off() -> None:
    assert verdict(policy(oidc=True, email_code=True, lobby=True), invitee()) == REFUSE
    assert verdict(policy(lobby=True), invitee()) == REFUSE


def test_a_host_invite_admits_its_host_whatever_the_attendee_policy() -> None:
    # The policy governs attendees: a lobby-only room's host still enters with their link.
    for rules in ({"lobby": True}, {"oidc": True}, {"email_code": True, "lobby": True}):
        assert verdict(policy(**rules), invitee(Role.HOST)) == AS_HOST


# Sign-in


def test_sign_in_works_only_where_it_is_a_way_in() -> None:
    assert verdict(policy(invite=True, email_code=True), signed_in()) == REFUSE
    assert verdict(policy(oidc=True), signed_in()) == ADMIT


def test_only_the_rooms_providers_count() -> None:
    room = policy(oidc=True, oidc_providers=("uni",))
    assert verdict(room, signed_in(provider="uni")) == ADMIT
    assert verdict(room, signed_in(provider="google")) == REFUSE
    # Not even a host address gets in through another provider.
    hosts = policy(oidc=True, oidc_providers=("uni",), host_emails=("ada@uni.example",))
    assert verdict(hosts, signed_in(provider="google")) == REFUSE


def test_groups_restrict_sign_in_hosts_included() -> None:
    room = policy(oidc=True, allowed_groups=("staff", "Team A"), host_emails=("ada@uni.example",))
    assert verdict(room, signed_in("bob@uni.example", groups=("students",))) == REFUSE
    assert verdict(room, signed_in("bob@uni.example", groups=())) == REFUSE
    # Compared exactly as the provider sends them.
    assert verdict(room, signed_in("bob@uni.example", groups=("team a",))) == REFUSE
    assert verdict(room, signed_in("bob@uni.example", groups=("Team A",))) == ADMIT
    assert verdict(room, signed_in(groups=("students",))) == REFUSE
    assert verdict(room, signed_in(groups=("staff",))) == AS_HOST


def test_allowed_addresses_and_domains() -> None:
    room = policy(
        oidc=True, allowed_emails=("guest@elsewhere.example",), allowed_domains=("uni.example",)
    )
    assert verdict(room, signed_in("ada@uni.example")) == ADMIT
    assert verdict(room, signed_in("Ada@UNI.Example")) == ADMIT
    assert verdict(room, signed_in("guest@elsewhere.example")) == ADMIT
    for outsider in (
        "eve@evil.example",
        "other@elsewhere.example",
        # A domain means that domain only: neither its subdomains nor look-alike endings.
        "eve@mail.uni.example",
        "eve@uni.example.evil.example",
        "eve@evil-uni.example",
    ):
        assert verdict(room, signed_in(outsider)) == REFUSE, outsider
    assert verdict(room, signed_in(None)) == REFUSE


def test_an_address_the_provider_did_not_verify_counts_for_nothing() -> None:
    listed = policy(oidc=True, allowed_domains=("uni.example",))
    assert verdict(listed, signed_in(verified=False)) == REFUSE
    hosts = policy(oidc=True, host_emails=("ada@uni.example",))
    assert verdict(hosts, signed_in(verified=False)) == ADMIT  # in, but not as a host
    assert verdict(hosts, signed_in(verified=True)) == AS_HOST
    # Without lists the address does not matter, verified or not.
    assert verdict(policy(oidc=True), signed_in(verified=False)) == ADMIT


def test_a_host_address_is_let_past_the_lists_and_the_lobby() -> None:
    room = policy(
        oidc=True,
        email_code=True,
        lobby=True,
        allowed_domains=("uni.example",),
        host_emails=("chair@board.example",),
    )
    assert verdict(room, signed_in("chair@board.example")) == AS_HOST
    assert verdict(room, coded("Chair@Board.Example")) == AS_HOST
    assert verdict(room, signed_in("ada@uni.example")) == LOBBY
    assert verdict(room, coded("ada@uni.example")) == LOBBY
    assert verdict(room, coded("eve@evil.example")) == REFUSE


# E-mail codes


def test_a_code_works_only_where_codes_are_a_way_in() -> None:
    assert verdict(policy(oidc=True, lobby=True), coded()) == REFUSE
    assert verdict(policy(email_code=True), coded()) == ADMIT


def test_a_code_proves_its_address_for_the_lists() -> None:
    room = policy(email_code=True, allowed_domains=("uni.example",))
    assert verdict(room, coded("ada@uni.example")) == ADMIT
    assert verdict(room, coded("eve@evil.example")) == REFUSE


def test_groups_are_for_sign_in_only() -> None:
    # A code proves an address, never a group: group rules do not stop (or admit) it.
    room = policy(email_code=True, allowed_groups=("staff",))
    assert verdict(room, coded()) == ADMIT


# The lobby


def test_a_lobby_on_top_queues_whoever_passed_the_checks() -> None:
    room = policy(oidc=True, lobby=True, allowed_domains=("uni.example",))
    assert verdict(room, signed_in()) == LOBBY
    assert verdict(room, signed_in("eve@evil.example")) == REFUSE


def test_a_typed_name_only_ever_waits_in_a_lobby() -> None:
    assert verdict(policy(lobby=True), guest()) == LOBBY
    assert verdict(policy(invite=True, lobby=True), guest()) == LOBBY
    assert verdict(policy(invite=True), guest()) == REFUSE
    assert verdict(policy(oidc=True, email_code=True), guest()) == REFUSE
