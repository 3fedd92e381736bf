"""Languages: which one a request gets, and the messages in it (issue 14).

`N_("…")` marks a user-visible message written in code (a refusal's title, a page's heading)
for extraction into the catalogs; it returns the English text unchanged, which is translated
where it is shown, in the language of the request that shows it."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name for a marker
    return message
