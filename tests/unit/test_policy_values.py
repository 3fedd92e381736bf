"""Building a room policy from what an admin or a host asked for: the rules the admin API, the
CLI and the host dashboard share (`policy.make_policy`)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admission.policy import describe_policy, make_policy, policy_version
from gateway.errors import InvalidInput
from gateway.i18n import SIMPLIFIED, TRADITIONAL, gettext
from gateway.store.records import RoomPolicy
from tests.fixtures.gateway_server import INVITES_ONLY


def ask(**changes: Any) -> RoomPolicy:
    values: dict[str, Any] = {
        **INVITES_ONLY,
        "known_providers": ["uni", "authentik"],
        "mail_configured": True,
    }
    values.update(changes)
    return make_policy(**values)


def refusal(**changes: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        ask(**changes)
    return caught.value.shown()


def test_lists_are_trimmed_lower_cased_and_kept_once() -> None:
    policy = ask(
        oidc=True,
        oidc_providers=["uni", "uni"],
        allowed_emails=[" Ada@Uni.Example", "ada@uni.example", ""],
        allowed_domains=["@Staff.Example ", "staff.example"],
        allowed_groups=[" Team A ", "team a", "Team A"],
        host_emails=["Chair@Uni.Example"],
    )
    assert policy.oidc_providers == ("uni",)
    assert policy.allowed_emails == ("ada@uni.example",)
    assert policy.allowed_domains == ("staff.example",)
    assert policy.allowed_groups == ("Team A", "team a")  # groups are compared as they are
    assert policy.host_emails == ("chair@uni.example",)


def test_every_problem_is_named_at_once() -> None:
    message = refusal(
        invite=False, oidc_providers=["nope"], allowed_emails=["x"], allowed_domains=["a b"]
    )
    for part in (
        "configured as nope",
        "at least one way in",
        "not a valid address: x",
        "not a valid domain",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"oidc": True, "known_providers": []}, "needs an OpenID Connect provider"),
        ({"allowed_emails": ["ada@"]}, "not a valid address"),
        ({"allowed_emails": ["@uni.example"]}, "not a valid address"),
        ({"allowed_emails": ["a da@uni.example"]}, "not a valid address"),
        ({"host_emails": ["ada@uni.example\u200b"]}, "invisible"),
        ({"allowed_domains": ["uni\nexample"]}, "line-break"),
        ({"allowed_domains": ["x" * 254]}, "at most 253"),
        ({"allowed_groups": ["g" * 257]}, "at most 256"),
        ({"allowed_groups": ["staff\u202e"]}, "control, invisible"),
        ({"allowed_domains": [f"d{i}.example" for i in range(1001)]}, "At most 1000"),
        ({"oidc_providers": [f"p{i}" for i in range(21)], "known_providers": []}, "At most 20"),
    ],
)
def test_bad_values_are_refused(changes: dict[str, Any], says: str) -> None:
    assert says in refusal(**changes)


def test_a_version_changes_with_the_policy_and_only_then() -> None:
    one, same = ask(lobby=True), ask(lobby=True)
    assert policy_version(one) == policy_version(same)
    assert policy_version(one) != policy_version(ask(lobby=False))
    assert policy_version(one) != policy_version(ask(lobby=True, allowed_domains=["x.example"]))


def test_a_policy_in_one_line_names_no_address() -> None:
    policy = ask(
        oidc=True,
        oidc_providers=["uni"],
        email_code=True,
        lobby=True,
        allowed_emails=["ada@uni.example"],
        allowed_domains=["a.example", "b.example"],
        host_emails=["chair@uni.example"],
    )
    line = describe_policy(policy)
    assert line == (
        "ways in: invite, sign-in (uni), e-mail code, host approves;"
        " lists: 1 address, 2 domains, 1 host address"
    )
    assert "@" not in line


def test_e_mail_codes_need_an_smtp_server_configured() -> None:
    says = refusal(email_code=True, mail_configured=False)
    assert "E-mail codes need an SMTP server" in says
    assert "[smtp] host (MEETGATE_SMTP__HOST)" in says
    # Codes are not asked for: no server is needed.
    assert ask(lobby=True, mail_configured=False).lobby is True


def test_every_problem_is_translated_on_its_own() -> None:
    with pytest.raises(InvalidInput) as caught:
        ask(
            oidc=True,
            known_providers=[],
            email_code=True,
            mail_configured=False,
            allowed_domains=["a b"],
        )
    english = caught.value.shown()
    assert english.startswith("Sign-in needs an OpenID Connect provider in the configuration. E-")
    assert english.endswith(" first. This is not a valid domain: a b")
    for language in (SIMPLIFIED, TRADITIONAL):
        shown = caught.value.shown(lambda message, language=language: gettext(language, message))
        assert "Sign-in needs" not in shown and "E-mail codes" not in shown
        assert "MEETGATE_SMTP__HOST" in shown
        # Sentences run on without a space after a full stop, as Chinese writes them.
        assert "。 " not in shown


def test_a_policy_in_one_line_speaks_the_pages_language() -> None:
    policy = ask(lobby=True, allowed_emails=["ada@uni.example", "bob@uni.example"])
    for language in (SIMPLIFIED, TRADITIONAL):
        line = describe_policy(policy, language)
        assert "ways in" not in line and "addresses" not in line and "2" in line
    assert describe_policy(policy, SIMPLIFIED) != describe_policy(policy, TRADITIONAL)
