"""Reading the small urlencoded forms Meetgate's pages post: size-capped, strict, no repeats.

Starlette's own form parser keeps a field of any size in memory; Meetgate's forms carry a few short
values, so a body past a few kilobytes is refused before it is parsed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from gateway.errors import BadRequest, DuplicateParameter, RequestTooLarge
from gateway.i18n import N_

MAX_FORM_BYTES = 4096
MAX_FORM_FIELDS = 8
FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(
    request: Request, *, limit: int = MAX_FORM_BYTES, max_fields: int = MAX_FORM_FIELDS
) -> dict[str, str]:
    """The fields of an urlencoded body (empty if there is no body); BadRequest otherwise."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge()
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        raise BadRequest(N_("This form must be sent as application/x-www-form-urlencoded."))
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=max_fields,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(N_("This form could not be read.")) from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise DuplicateParameter()
        fields[name] = value
    return fields
