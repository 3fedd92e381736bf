"""The host dashboard's policy form: what a host ticked and typed, read into a room policy by
the same rules the admin API applies (`policy.make_policy`), and the view of a policy the form
and the dashboard's script show."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.admission.policy import describe_policy, make_policy, policy_version
from gateway.edge.languages import current
from gateway.errors import InvalidInput
from gateway.i18n import N_
from gateway.store.records import RoomPolicy

# Long enough for a few thousand addresses; longer lists are the admin API's (or the CLI's).
POLICY_FORM_BYTES = 128 * 1024
FLAG_FIELDS = ("invite", "oidc", "email_code", "lobby")
LIST_FIELDS = ("allowed_emails", "allowed_domains", "allowed_groups", "host_emails")
# The version of the policy the form showed (`policy_version`).
VERSION_FIELD = "was"
# + a configured provider's name: ticked, that provider is accepted for sign-in.
PROVIDER_FIELD = "provider."
TICKED = frozenset({"1", "on"})
# Addresses and domains may be pasted as lists of any kind; a group is one line (LDAP groups
# can contain commas and spaces).
_ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")
_LINES = re.compile(r"\r\n|\r|\n")


def max_policy_fields(providers: int) -> int:
    """How many fields the form may carry: its own, each provider's box, csrf and confirmed."""
    return len(FLAG_FIELDS) + len(LIST_FIELDS) + providers + 3


def passed_on(fields: Mapping[str, str]) -> dict[str, str]:
    """The policy form's fields, to be repeated on the confirmation page."""
    return {
        name: value
        for name, value in fields.items()
        if name in FLAG_FIELDS
        or name in LIST_FIELDS
        or name == VERSION_FIELD
        or name.startswith(PROVIDER_FIELD)
    }


def policy_from_form(
    fields: Mapping[str, str], providers: Sequence[str], *, mail_configured: bool
) -> RoomPolicy:
    """The policy the form asks for; InvalidInput for anything the admin API would refuse, an
    unknown provider, or a box that says neither ticked nor not. `mail_configured`: whether the
    configuration names an SMTP server (e-mail codes need one)."""
    if VERSION_FIELD not in fields:
        raise InvalidInput(N_("Say which policy this form changes (field 'was'): reload the page."))
    chosen = [
        name.removeprefix(PROVIDER_FIELD)
        for name, value in fields.items()
        if name.startswith(PROVIDER_FIELD) and _ticked(name, value)
    ]
    return make_policy(
        invite=_flag(fields, "invite"),
        oidc=_flag(fields, "oidc"),
        oidc_providers=chosen,
        email_code=_flag(fields, "email_code"),
        allowed_emails=_ADDRESS_SEPARATORS.split(fields.get("allowed_emails", "")),
        allowed_domains=_ADDRESS_SEPARATORS.split(fields.get("allowed_domains", "")),
        allowed_groups=_LINES.split(fields.get("allowed_groups", "")),
        lobby=_flag(fields, "lobby"),
        host_emails=_ADDRESS_SEPARATORS.split(fields.get("host_emails", "")),
        known_providers=providers,
        mail_configured=mail_configured,
    )


def _flag(fields: Mapping[str, str], name: str) -> bool:
    return name in fields and _ticked(name, fields[name])


def _ticked(name: str, value: str) -> bool:
    # An unticked box is not sent at all; anything but a ticked box's value is a forged form.
    if value not in TICKED:
        raise InvalidInput(N_("The box '{name}' can only be ticked or not."), name=name[:60])
    return True


def policy_view(policy: RoomPolicy, providers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What the form shows: each way in, the configured providers (name, label) with those the
    policy accepts ticked, the lists one entry a line, and the version the form carries back."""
    configured = {name for name, _ in providers}
    return {
        "invite": policy.invite,
        "oidc": policy.oidc,
        "email_code": policy.email_code,
        "lobby": policy.lobby,
        "providers": [
            {"name": name, "label": label, "chosen": name in policy.oidc_providers}
            for name, label in providers
        ],
        # Accepted by the policy but no longer configured: saving the form drops them.
        "gone_providers": [name for name in policy.oidc_providers if name not in configured],
        **{name: "\n".join(getattr(policy, name)) for name in LIST_FIELDS},
        "summary": describe_policy(policy, current.get()),
        "version": policy_version(policy),
    }
