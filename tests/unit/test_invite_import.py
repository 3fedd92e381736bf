"""Reading a list of invitees (gateway/admission/invite_import.py) from hostile files: encodings,
separators, quoting, scripts, refused characters, limits; and any rows written by csv.writer
come back as the same invitees or as refused rows at their lines, never as an exception."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.email_codes import normalise_address
from gateway.admission.invite_import import (
    DELIMITERS,
    MAX_FIELD_CHARS,
    MAX_FILE_BYTES,
    MAX_ROWS,
    Delimiter,
    InviteList,
    InviteListRefused,
    read_invite_list,
)
from gateway.admission.invites import validate_display_name
from gateway.errors import InvalidInput
from gateway.store.records import Role


def read(text: str, delimiter: Delimiter | None = None) -> InviteList:
    return read_invite_list(text.encode("utf-8"), delimiter)


def rows(found: InviteList) -> list[tuple[int, str, str, str]]:
    return [(i.line, i.name, i.address, i.role.value) for i in found.invitees]


def problems(found: InviteList) -> list[tuple[int, str]]:
    return [(p.line, p.code) for p in found.problems]


def test_plain_rows_without_header() -> None:
    found = read("Ada Lovelace,ada@example.org\nGrace Hopper,grace@example.org,host\n")
    assert rows(found) == [
        (1, "Ada Lovelace", "ada@example.org", "attendee"),
        (2, "Grace Hopper", "grace@example.org", "host"),
    ]
    assert not found.problems
    assert not found.header
    assert found.delimiter == ","


def test_bom_crlf_and_semicolons() -> None:
    found = read(
        "\ufeffName;E-Mail;Role\r\nAda;ADA@Example.org ;HOST\r\nGrace;grace@example.org;\r\n"
    )
    assert found.header
    assert found.delimiter == ";"
    assert rows(found) == [
        (2, "Ada", "ada@example.org", "host"),
        (3, "Grace", "grace@example.org", "attendee"),
    ]


def test_lone_cr_line_ends() -> None:
    found = read("Ada,ada@example.org\rGrace,grace@example.org\r")
    assert [r[0] for r in rows(found)] == [1, 2]


@pytest.mark.parametrize(
    "header",
    [
        "name,email",
        "Name,E-mail",
        "NAME,E-MAIL,ROLE",
        "email,name",
        "e_mail,full name,role",
        "Display Name,Email Address",
        " name , mail ",
        "Role,Address,Name",
    ],
)
def test_header_variants(header: str) -> None:
    columns = [c.strip().lower() for c in header.split(",")]
    line = ",".join(
        "host" if "role" in c else "Ada" if "name" in c else "ada@example.org" for c in columns
    )
    found = read(f"{header}\n{line}\n")
    assert found.header
    role = "host" if any("role" in c for c in columns) else "attendee"
    assert rows(found) == [(2, "Ada", "ada@example.org", role)]


@pytest.mark.parametrize(
    ("header", "column"),
    [("name,email,company", 3), ("name,email,name", 0), ("email,name,role,role", 0)],
    ids=["unknown column", "name twice", "role twice"],
)
def test_unreadable_headers_are_refused_whole(header: str, column: int) -> None:
    with pytest.raises(InviteListRefused) as refused:
        read(f"{header}\nAda,ada@example.org\n")
    assert "nothing was made" in refused.value.shown()
    if column:
        assert f"Column {column}" in refused.value.shown()


def test_a_row_of_header_words_with_an_address_is_data() -> None:
    found = read("name,name@example.org\n")
    assert rows(found) == [(1, "name", "name@example.org", "attendee")]


def test_quoted_commas_quotes_and_newlines() -> None:
    text = (
        'name,email\n"Lovelace, Ada",ada@example.org\n"Grace ""Amazing"" Hopper",g@example.org\n'
        '"two\nlines",two@example.org\nafter,after@example.org\n'
    )
    found = read(text)
    assert rows(found) == [
        (2, "Lovelace, Ada", "ada@example.org", "attendee"),
        (3, 'Grace "Amazing" Hopper', "g@example.org", "attendee"),
        # Where the record after a multi-line field starts: its physical line.
        (6, "after", "after@example.org", "attendee"),
    ]
    # The name with a line break in it is refused (a control character), at the line it starts.
    assert problems(found) == [(4, "name_refused")]


@pytest.mark.parametrize(
    "name",
    ["李小龍", "王秀英", "محمد عبد الله", "Zoë Ånström", "Ada 👩‍💻", "Ελένη", "Юлия"],
    ids=["chinese", "chinese-2", "arabic", "latin-accents", "emoji-zwj", "greek", "cyrillic"],
)
def test_names_in_any_script(name: str) -> None:
    found = read(f"{name},someone@example.org\n")
    if "\u200d" in name:
        # A zero-width joiner is a format character: refused as admission refuses it.
        assert problems(found) == [(1, "name_refused")]
    else:
        assert rows(found) == [(1, validate_display_name(name), "someone@example.org", "attendee")]


@pytest.mark.parametrize(
    "name",
    ["\u202eevil", "a\u200bb", "bell\x07", "nul\x00name", "tab\there", "\ue000private"],
    ids=["rlo", "zero-width-space", "bell", "nul", "tab", "private-use"],
)
def test_bidi_overrides_and_control_characters_are_refused(name: str) -> None:
    found = read(f"{name},x@example.org\nok,ok@example.org\n")
    assert problems(found) == [(1, "name_refused")]
    assert found.problems[0].reason.startswith("name refused: ")
    assert rows(found) == [(2, "ok", "ok@example.org", "attendee")]


def test_id_shaped_name_is_refused() -> None:
    found = read(f"{'ab' * 32},x@example.org\n")
    assert problems(found) == [(1, "name_refused")]
    assert "code, not a name" in found.problems[0].reason


def test_invalid_utf8_on_one_line_is_reported_alone() -> None:
    data = b"Ada,ada@example.org\n\xff\xfeBad,bad@example.org\nGrace,grace@example.org\n"
    found = read_invite_list(data)
    assert [r[0] for r in rows(found)] == [1, 3]
    assert problems(found) == [(2, "not_utf8")]
    assert found.problems[0].reason.startswith("line is not UTF-8")


def test_invalid_utf8_inside_a_quoted_field_refuses_only_that_record() -> None:
    data = b'"Ada\n\xc3(",ada@example.org\nGrace,grace@example.org\n'
    found = read_invite_list(data)
    assert problems(found) == [(2, "not_utf8")]
    assert rows(found) == [(3, "Grace", "grace@example.org", "attendee")]


def test_latin1_file_reports_each_bad_line() -> None:
    data = "José,jose@example.org\nAda,ada@example.org\nRenée,renee@example.org\n".encode("latin-1")
    found = read_invite_list(data)
    assert problems(found) == [(1, "not_utf8"), (3, "not_utf8")]
    assert [r[0] for r in rows(found)] == [2]


def test_duplicates_name_the_first_line() -> None:
    found = read("A,a@example.org\nB,b@example.org\nC, A@EXAMPLE.ORG\n")
    assert problems(found) == [(3, "duplicate")]
    assert found.problems[0].reason == "duplicate of line 1"


def test_a_duplicate_of_a_refused_row_is_refused_too() -> None:
    # The first row is fixed and imported again: the second must not then make a second invite.
    found = read("\u202eX,a@example.org\nA,a@example.org\n")
    assert problems(found) == [(1, "name_refused"), (2, "duplicate")]


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        (",a@example.org", "empty_name", "empty name"),
        ("   ,a@example.org", "empty_name", "empty name"),
        ("Ada", "no_address", "no e-mail address"),
        ("Ada,", "no_address", "no e-mail address"),
        ("Ada,not an address", "bad_address", "not an e-mail address"),
        ("Ada,ada@localhost", "bad_address", "not an e-mail address"),
        ('Ada,"Ada <ada@example.org>"', "bad_address", "not an e-mail address"),
        ("Ada,ada@example.org,boss", "unknown_role", "unknown role 'boss' (attendee or host)"),
        ("Ada,ada@example.org,x@example.org", "unknown_role", "unknown role (attendee or host)"),
        ("Ada,ada@example.org,host,extra", "too_many_columns", "too many columns"),
    ],
    ids=[
        "empty-name",
        "blank-name",
        "no-address-column",
        "empty-address",
        "words",
        "no-domain-dot",
        "display-name-form",
        "unknown-role",
        "role-with-address-not-echoed",
        "too-many-columns",
    ],
)
def test_bad_rows(line: str, code: str, reason: str) -> None:
    found = read(f"ok,ok@example.org\n{line}\n")
    assert problems(found) == [(2, code)]
    assert found.problems[0].reason == reason
    assert rows(found) == [(1, "ok", "ok@example.org", "attendee")]


def test_no_address_in_any_reason() -> None:
    text = "\n".join(
        [
            "a,a@example.org",
            "a,a@example.org",
            "\u202eb,b@example.org",
            "c,c@example.org,c@example.org",
            "d,d@example.org,host,d@example.org",
            ",e@example.org",
        ]
    )
    found = read(text)
    assert len(found.problems) == 5
    for problem in found.problems:
        assert "@" not in problem.reason
        assert "example" not in repr(problem)


def test_trailing_empty_columns_and_empty_lines_are_ignored() -> None:
    found = read("Ada,ada@example.org,,,\n\n  \n,,\nGrace,grace@example.org;\n")
    assert rows(found) == [(1, "Ada", "ada@example.org", "attendee")]
    # "grace@example.org;" is not an address (the file is comma-separated).
    assert problems(found) == [(5, "bad_address")]


def test_empty_file() -> None:
    found = read("")
    assert found.invitees == () and found.problems == ()
    assert read("\ufeff\r\n\r\n").invitees == ()


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("Ada, Countess;ada@example.org\n", ";"),
        ('"Lovelace; Ada",ada@example.org\n', ","),
        ("name;email\nAda;ada@example.org\n", ";"),
        ("Ada;ada@example.org;host\nBob,bob@example.org\n", ";"),
        ("nothing here\n", ","),
    ],
    ids=["comma-in-name", "semicolon-quoted", "header", "first-rows-decide", "tie-comma"],
)
def test_delimiter_sniffing(text: str, delimiter: Delimiter) -> None:
    assert read(text).delimiter == delimiter


def test_delimiter_given() -> None:
    found = read("Ada, Countess;ada@example.org\n", delimiter=",")
    assert found.delimiter == ","
    assert problems(found) == [(1, "bad_address")]


def test_over_large_file_is_refused_whole() -> None:
    line = b"Ada,ada@example.org\n"
    data = line * (MAX_FILE_BYTES // len(line) + 1)
    with pytest.raises(InviteListRefused) as refused:
        read_invite_list(data)
    assert "larger than 2 MiB" in refused.value.shown()


def test_too_many_rows_is_refused_whole() -> None:
    text = "".join(f"P{n},p{n}@example.org\n" for n in range(MAX_ROWS + 1))
    with pytest.raises(InviteListRefused) as refused:
        read(text)
    assert f"more than {MAX_ROWS} rows" in refused.value.shown()
    # Exactly the limit is read (empty lines and the header do not count).
    at_limit = "name,email\n\n" + "".join(f"P{n},p{n}@example.org\n" for n in range(MAX_ROWS))
    assert len(read(at_limit).invitees) == MAX_ROWS


def test_over_long_field_is_refused_whole() -> None:
    with pytest.raises(InviteListRefused) as refused:
        read(f"ok,ok@example.org\n{'x' * (MAX_FIELD_CHARS + 1)},a@example.org\n")
    assert refused.value.shown().startswith("Line 2: a field is longer than")
    # A long name under the field limit is a row's problem only.
    found = read(f"{'x' * 65},a@example.org\n")
    assert problems(found) == [(1, "name_refused")]


def test_a_quote_left_open_is_refused_whole() -> None:
    text = 'ok,ok@example.org\n"Ada,ada@example.org\n' + "".join(
        f"P{n},p{n}@example.org\n" for n in range(100)
    )
    with pytest.raises(InviteListRefused) as refused:
        read(text)
    assert "Line 2" in refused.value.shown()
    # Beyond the csv module's own field limit too: one clear refusal, not its error.
    with pytest.raises(InviteListRefused):
        read('"' + "x" * 200_000)


def test_a_quote_left_open_at_the_end_is_the_last_row_refused() -> None:
    found = read('ok,ok@example.org\n"Ada,ada@example.org\n')
    assert problems(found) == [(2, "no_address")]


def test_lone_surrogates_and_nuls_never_raise() -> None:
    data = "Ada,ada@example.org\n\ud800x,y@example.org\n".encode("utf-8", "surrogatepass")
    found = read_invite_list(data + b"\x00,\x00\n")
    assert problems(found) == [(2, "not_utf8"), (3, "name_refused")]


def test_repr_shows_no_address() -> None:
    found = read("Ada,ada@example.org\nB,x\n")
    assert "ada@" not in repr(found)
    assert "Ada" not in repr(found)


# Any text the csv module writes comes back as the same invitee or as a refused row at its line.
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=30)
_row = st.tuples(
    st.one_of(_text, st.sampled_from(["Ada", "李小龍", "محمد", "  x  "])),
    st.one_of(_text, st.sampled_from(["ada@example.org", "B@Example.org", "x@y"])),
    st.one_of(st.just(""), st.sampled_from(["host", "attendee", "HOST"]), _text),
)


def _valid(row: tuple[str, str, str]) -> tuple[str, str, Role] | None:
    name, address, role = row
    try:
        shown = validate_display_name(name)
        normalised = normalise_address(address)
    except InvalidInput:
        return None
    word = role.strip().lower()
    if word not in ("", "host", "attendee"):
        return None
    return shown, normalised, Role.HOST if word == "host" else Role.ATTENDEE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, max_size=12), st.sampled_from(DELIMITERS), st.booleans())
def test_csv_writer_round_trip(
    written: list[tuple[str, str, str]], delimiter: Delimiter, header: bool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    if header:
        writer.writerow(["name", "email", "role"])
    starts: list[int] = []
    for row in written:
        # Physical lines end at CRLF, LF or a lone CR (one in a quoted field too).
        starts.append(len(out.getvalue().encode().splitlines()) + 1)
        writer.writerow(row)
    found = read_invite_list(out.getvalue().encode("utf-8"), delimiter)
    good = {invitee.line: invitee for invitee in found.invitees}
    refused = {problem.line: problem for problem in found.problems}
    assert len(good) + len(refused) <= len(written)
    seen: set[str] = set()
    for line, row in zip(starts, written, strict=True):
        if not any(field.strip() for field in row):
            # A row of blanks is skipped, as an empty line.
            assert line not in good and line not in refused
            continue
        if found.header and not header and line == starts[0]:
            # A first row of header words (name, e-mail) is the header.
            continue
        expected = _valid(row)
        try:
            address: str | None = normalise_address(row[1])
        except InvalidInput:
            address = None
        if expected is not None and address not in seen:
            invitee = good[line]
            assert (invitee.name, invitee.address, invitee.role) == expected
        else:
            assert line in refused
            if address in seen:
                assert refused[line].code == "duplicate"
        if address is not None:
            seen.add(address)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, max_size=12), st.sampled_from(DELIMITERS))
def test_sniffing_never_makes_an_invitee_that_was_not_written(
    written: list[tuple[str, str, str]], delimiter: Delimiter
) -> None:
    # A file whose separator is found from its rows may be read with the wrong one when its
    # first rows hold no address; then rows are refused, but no invitee is ever made up.
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    starts: dict[int, tuple[str, str, str]] = {}
    for row in written:
        starts[len(out.getvalue().encode().splitlines()) + 1] = row
        writer.writerow(row)
    found = read_invite_list(out.getvalue().encode("utf-8"))
    for invitee in found.invitees:
        assert invitee.line in starts
        assert (invitee.name, invitee.address, invitee.role) == _valid(starts[invitee.line])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, *DELIMITERS]))
def test_any_bytes_never_raise(data: bytes, delimiter: Delimiter | None) -> None:
    found = read_invite_list(data, delimiter)
    for problem in found.problems:
        assert problem.line >= 1
        assert problem.reason
