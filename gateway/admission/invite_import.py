"""Reading a list of invitees (CSV: name, e-mail address, optional role) into rows an invite
can be made for and the rows refused, each with its line and a plain reason. Pure: bytes in,
values out; the admin API (gateway/admin_invitations.py) makes the invites.

The file is UTF-8 (a byte order mark allowed), comma- or semicolon-separated (given, or found
from its first rows), fields quoted as spreadsheets write them, lines ending in CRLF, LF or CR.
A header row is recognised by its words (name, e-mail, role, in any order and case); without
one the columns are name, e-mail, role. A line that is not UTF-8 refuses the row it is part of
and no other. A file over a limit (size, rows, a field's length) is refused whole, with one
error, so that nothing is made of what is likely not a list of invitees at all.

A reason never repeats what the refused line holds beyond a role word: a line number is what
points the organiser at it, and an address or a name in an answer or a log line is a leak.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.admission.email_codes import normalise_address
from gateway.admission.invites import validate_display_name
from gateway.errors import InvalidInput, Phrase
from gateway.i18n import N_
from gateway.store.records import Role

MAX_FILE_BYTES: Final = 2 * 1024 * 1024
MAX_ROWS: Final = 5_000
# Far beyond a name's 64 characters and an address's 254: a longer field is not a list of
# invitees (another file, or a quote left open that swallowed the lines after it).
MAX_FIELD_CHARS: Final = 1_000
BOM: Final = b"\xef\xbb\xbf"
Delimiter = Literal[",", ";"]
DELIMITERS: Final[tuple[Delimiter, ...]] = (",", ";")
# Records read to find the delimiter when none is given.
SNIFFED_RECORDS: Final = 50
# A role word is repeated in its row's reason only if it is this plain (never an address).
SHOWN_ROLE = re.compile(r"[A-Za-z0-9 _-]{1,20}")

Column = Literal["name", "email", "role"]
COLUMNS: Final[tuple[Column, ...]] = ("name", "email", "role")
# Header words, compared without case, spaces, '-' and '_': "E-Mail", "email_address", "Name".
HEADER_WORDS: Final[dict[str, Column]] = {
    "name": "name",
    "fullname": "name",
    "displayname": "name",
    "email": "email",
    "mail": "email",
    "emailaddress": "email",
    "mailaddress": "email",
    "address": "email",
    "role": "role",
}


class InviteListRefused(InvalidInput):
    """The whole file is refused: over a limit, or a header that names what cannot be read."""

    code = "invite_list_refused"


@dataclass(frozen=True, slots=True)
class Invitee:
    """A good row: an invite can be made for it. `line` is the line its record starts on."""

    line: int
    name: str
    address: str
    role: Role

    def __repr__(self) -> str:
        # Never an address in a log line or a traceback.
        return f"Invitee(line={self.line}, role={self.role.value})"


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A refused row: the line its record starts on (a line that is not UTF-8: that line), a
    stable `code` and why (`why`, translated where it is shown; `reason` is its English)."""

    line: int
    code: str
    why: Phrase

    @property
    def reason(self) -> str:
        return self.why.shown()

    def __repr__(self) -> str:
        return f"RowProblem(line={self.line}, code={self.code!r})"


@dataclass(frozen=True, slots=True)
class InviteList:
    """What a file held: its good rows and its refused ones, each in the order of its lines."""

    invitees: tuple[Invitee, ...]
    problems: tuple[RowProblem, ...]
    delimiter: Delimiter
    header: bool


def _problem(line: int, code: str, message: str, **values: object) -> RowProblem:
    return RowProblem(line, code, Phrase(message, **values))


@dataclass(slots=True)
class _Lines:
    """The file's physical lines, decoded one by one: a line that is not UTF-8 is decoded with
    replacement characters (its quotes, commas and line ends stay where they were, so the rows
    after it are read as written) and remembered, to refuse the record it belongs to."""

    lines: list[str]
    not_utf8: set[int]

    @classmethod
    def of(cls, data: bytes) -> _Lines:
        lines: list[str] = []
        not_utf8: set[int] = set()
        # bytes.splitlines breaks at \r, \n and \r\n only (str.splitlines would break inside a
        # field at \x0b, \x1c or U+2028 too).
        for number, raw in enumerate(data.splitlines(keepends=True), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(raw.decode("utf-8", errors="replace"))
                not_utf8.add(number)
        return cls(lines, not_utf8)


@dataclass(frozen=True, slots=True)
class _Record:
    first: int
    last: int
    fields: list[str]


def _records(lines: Sequence[str], delimiter: Delimiter) -> Iterator[_Record]:
    """The records of `lines` with the physical lines each spans. csv.Error (a field over the
    csv module's own limit) is turned into the file's refusal."""
    reader = csv.reader(
        iter(lines), delimiter=delimiter, quotechar='"', doublequote=True, skipinitialspace=True
    )
    last = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InviteListRefused(
                N_(
                    "Line {line}: a field is longer than {most} characters (a quote left open?);"
                    " nothing was made."
                ),
                line=last + 1,
                most=MAX_FIELD_CHARS,
            ) from exc
        first, last = last + 1, reader.line_num
        yield _Record(first, last, fields)


def _fields(record: _Record) -> list[str]:
    """The record's fields, without the empty ones a spreadsheet leaves at its end."""
    fields = list(record.fields)
    while fields and not fields[-1].strip():
        fields.pop()
    return fields


def _header_key(field: str) -> str:
    return re.sub(r"[\s_-]", "", unicodedata.normalize("NFKC", field)).casefold()


def _is_address(field: str) -> bool:
    try:
        normalise_address(field)
    except InvalidInput:
        return False
    return True


def _header_columns(fields: Sequence[str]) -> list[Column | None] | None:
    """The columns a header row names, if `fields` is one: it names a name and an e-mail
    column and holds no address. None if it is a row of data."""
    if not any(fields) or any(_is_address(field) for field in fields):
        return None
    columns = [HEADER_WORDS.get(_header_key(field)) for field in fields]
    if "name" not in columns or "email" not in columns:
        return None
    return columns


def _score(lines: Sequence[str], delimiter: Delimiter) -> tuple[int, int]:
    """How well `delimiter` reads the first records: those that read as a header or as a row
    with one address among two or three fields, then how many fields they split into."""
    good = fields_seen = 0
    try:
        for index, record in enumerate(_records(lines, delimiter)):
            if index >= SNIFFED_RECORDS:
                break
            fields = _fields(record)
            if not fields:
                continue
            addresses = sum(_is_address(field) for field in fields)
            if _header_columns(fields) is not None or (2 <= len(fields) <= 3 and addresses == 1):
                good += 1
            fields_seen += len(fields)
    except InviteListRefused:
        pass
    return good, fields_seen


def sniff_delimiter(lines: Sequence[str]) -> Delimiter:
    """Comma or semicolon, whichever reads the first records as rows of invitees (a header, or
    two or three fields of which one is an address); a tie goes to the one that splits more,
    then to the comma."""
    comma, semicolon = _score(lines, ","), _score(lines, ";")
    return ";" if semicolon > comma else ","


def _check_field_lengths(record: _Record) -> None:
    if any(len(field) > MAX_FIELD_CHARS for field in record.fields):
        raise InviteListRefused(
            N_(
                "Line {line}: a field is longer than {most} characters (a quote left open?);"
                " nothing was made."
            ),
            line=record.first,
            most=MAX_FIELD_CHARS,
        )


def _role(value: str, line: int) -> Role | RowProblem:
    word = value.strip().lower()
    if not word or word == "attendee":
        return Role.ATTENDEE
    if word == "host":
        return Role.HOST
    if SHOWN_ROLE.fullmatch(value.strip()):
        return _problem(
            line, "unknown_role", N_("unknown role '{role}' (attendee or host)"), role=value.strip()
        )
    return _problem(line, "unknown_role", N_("unknown role (attendee or host)"))


def _name(value: str, line: int) -> str | RowProblem:
    if not value.strip():
        return _problem(line, "empty_name", N_("empty name"))
    try:
        return validate_display_name(value)
    except InvalidInput as exc:
        # The rule's own words (a character not allowed, too long, shaped as a code), never the
        # name itself.
        return _problem(
            line, "name_refused", N_("name refused: {why}"), why=Phrase(exc.message, **exc.values)
        )


def read_invite_list(data: bytes, delimiter: Delimiter | None = None) -> InviteList:
    """The invitees `data` lists and the rows it refuses. `delimiter`: None to find it from the
    first rows. InviteListRefused if the file is over a limit or its header cannot be read."""
    if len(data) > MAX_FILE_BYTES:
        raise InviteListRefused(
            N_("The file is larger than {most} MiB; nothing was made. Split it."),
            most=MAX_FILE_BYTES // (1024 * 1024),
        )
    decoded = _Lines.of(data.removeprefix(BOM))
    chosen: Delimiter = delimiter or sniff_delimiter(decoded.lines)
    columns: list[Column | None] = list(COLUMNS)
    header = False
    invitees: list[Invitee] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    rows = 0
    for record in _records(decoded.lines, chosen):
        _check_field_lengths(record)
        fields = _fields(record)
        bad_lines = sorted(n for n in range(record.first, record.last + 1) if n in decoded.not_utf8)
        if not fields and not bad_lines:
            continue
        if not header and rows == 0 and not problems and not invitees and not bad_lines:
            named = _header_columns(fields)
            if named is not None:
                columns = _checked_header(named)
                header = True
                continue
        rows += 1
        if rows > MAX_ROWS:
            raise InviteListRefused(
                N_("The file has more than {most} rows; nothing was made. Split it."),
                most=MAX_ROWS,
            )
        if bad_lines:
            problems.extend(
                _problem(n, "not_utf8", N_("line is not UTF-8 (save the file as UTF-8)"))
                for n in bad_lines
            )
            continue
        found = _row(record.first, fields, columns, seen)
        if isinstance(found, RowProblem):
            problems.append(found)
        else:
            invitees.append(found)
    problems.sort(key=lambda problem: problem.line)
    return InviteList(tuple(invitees), tuple(problems), chosen, header)


def _checked_header(columns: list[Column | None]) -> list[Column | None]:
    for index, column in enumerate(columns, start=1):
        if column is None:
            raise InviteListRefused(
                N_(
                    "Column {column} of the header row is not name, e-mail or role; nothing was"
                    " made."
                ),
                column=index,
            )
        if columns.count(column) > 1:
            raise InviteListRefused(
                N_("The header row names the {what} column twice; nothing was made."),
                what=column,
            )
    return columns


def _row(
    line: int, fields: list[str], columns: Sequence[Column | None], seen: dict[str, int]
) -> Invitee | RowProblem:
    """One record's invitee, or why it is refused. `seen`: each address read so far, by line."""
    if len(fields) > len(columns):
        return _problem(line, "too_many_columns", N_("too many columns"))
    values: dict[Column | None, str] = dict(zip(columns, fields, strict=False))
    raw_address = values.get("email", "")
    address: str | None = None
    if raw_address.strip():
        try:
            address = normalise_address(raw_address)
        except InvalidInput:
            address = None
    # A duplicate is found whatever else is wrong with either row: a corrected first row must
    # not make two invites for one address on the next import.
    if address is not None and address in seen:
        return _problem(line, "duplicate", N_("duplicate of line {first}"), first=seen[address])
    if address is not None:
        seen[address] = line
    name = _name(values.get("name", ""), line)
    if isinstance(name, RowProblem):
        return name
    if not raw_address.strip():
        return _problem(line, "no_address", N_("no e-mail address"))
    if address is None:
        return _problem(line, "bad_address", N_("not an e-mail address"))
    role = _role(values.get("role", ""), line)
    if isinstance(role, RowProblem):
        return role
    return Invitee(line, name, address, role)
