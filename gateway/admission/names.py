"""Display names: the checks a name passes, its confusable skeleton, and the name a ticket shows.

Pure functions, no I/O. The skeleton follows the idea of Unicode TS #39 with a small hand-written
table for the look-alikes impersonators use; it is deliberately coarse (i, l, I and 1 are one
letter to it), because a false collision only costs a visible " (2)".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from gateway.errors import InvalidInput
from gateway.store.records import Role

MAX_NAME_CHARS = 64
# Refused before any work: no name this long can shrink to MAX_NAME_CHARS under NFKC and
# whitespace collapsing that a person would type.
MAX_RAW_CHARS = 16 * MAX_NAME_CHARS
# More stacked combining marks on one letter than any script needs ("Zalgo" text draws over
# the names around it).
MAX_MARKS_PER_LETTER = 4
GUEST_MARKER = "guest"

# Cc control, Cf format (bidi overrides and isolates, zero-width joiners and spaces, tags),
# Cs surrogates, Co private use, Cn unassigned.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Letters that draw as nothing: a name made of them would show as blank.
_BLANK_LETTERS = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"})

# Case-sensitive look-alikes, applied before casefolding: capitals whose lowercase form no longer
# looks like the Latin letter they imitate (Greek capital eta looks like H, its
# lowercase like n).
_CAPITALS = str.maketrans(
    {
        # Latin
        "I": "l",
        # Greek
        "\N{GREEK CAPITAL LETTER ALPHA}": "a",
        "\N{GREEK CAPITAL LETTER BETA}": "b",
        "\N{GREEK CAPITAL LETTER EPSILON}": "e",
        "\N{GREEK CAPITAL LETTER ZETA}": "z",
        "\N{GREEK CAPITAL LETTER ETA}": "h",
        "\N{GREEK CAPITAL LETTER IOTA}": "l",
        "\N{GREEK CAPITAL LETTER KAPPA}": "k",
        "\N{GREEK CAPITAL LETTER MU}": "m",
        "\N{GREEK CAPITAL LETTER NU}": "n",
        "\N{GREEK CAPITAL LETTER OMICRON}": "o",
        "\N{GREEK CAPITAL LETTER RHO}": "p",
        "\N{GREEK CAPITAL LETTER TAU}": "t",
        "\N{GREEK CAPITAL LETTER UPSILON}": "y",
        "\N{GREEK CAPITAL LETTER CHI}": "x",
        "\N{GREEK CAPITAL LUNATE SIGMA SYMBOL}": "c",
        "\N{GREEK CAPITAL LETTER YOT}": "j",
        # Cyrillic
        "\N{CYRILLIC CAPITAL LETTER A}": "a",
        "\N{CYRILLIC CAPITAL LETTER VE}": "b",
        "\N{CYRILLIC CAPITAL LETTER IE}": "e",
        "\N{CYRILLIC CAPITAL LETTER ZE}": "3",
        "\N{CYRILLIC CAPITAL LETTER EN}": "h",
        "\N{CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I}": "l",
        "\N{CYRILLIC CAPITAL LETTER JE}": "j",
        "\N{CYRILLIC CAPITAL LETTER KA}": "k",
        "\N{CYRILLIC CAPITAL LETTER EM}": "m",
        "\N{CYRILLIC CAPITAL LETTER O}": "o",
        "\N{CYRILLIC CAPITAL LETTER ER}": "p",
        "\N{CYRILLIC CAPITAL LETTER ES}": "c",
        "\N{CYRILLIC CAPITAL LETTER DZE}": "s",
        "\N{CYRILLIC CAPITAL LETTER TE}": "t",
        "\N{CYRILLIC CAPITAL LETTER U}": "y",
        "\N{CYRILLIC CAPITAL LETTER STRAIGHT U}": "y",
        "\N{CYRILLIC CAPITAL LETTER HA}": "x",
        "\N{CYRILLIC CAPITAL LETTER KOMI DE}": "d",
        "\N{CYRILLIC CAPITAL LETTER QA}": "q",
        "\N{CYRILLIC CAPITAL LETTER WE}": "w",
        "\N{CYRILLIC LETTER PALOCHKA}": "l",
    }
)

# Look-alikes after casefolding, each mapped to its Latin prototype.
_LETTERS = str.maketrans(
    {
        # Latin variants and digits
        "0": "o",
        "1": "l",
        "i": "l",
        "\N{LATIN SMALL LETTER DOTLESS I}": "l",
        "\N{LATIN SMALL LETTER IOTA}": "l",
        "\N{LATIN LETTER DENTAL CLICK}": "l",
        "|": "l",
        "\N{LATIN SMALL LETTER ALPHA}": "a",
        "\N{LATIN SMALL LETTER SCRIPT G}": "g",
        "\N{LATIN SMALL LETTER LONG S}": "s",
        # Greek
        "\N{GREEK SMALL LETTER ALPHA}": "a",
        "\N{GREEK SMALL LETTER BETA}": "b",
        "\N{GREEK SMALL LETTER EPSILON}": "e",
        "\N{GREEK SMALL LETTER ETA}": "n",
        "\N{GREEK SMALL LETTER IOTA}": "l",
        "\N{GREEK SMALL LETTER KAPPA}": "k",
        "\N{GREEK SMALL LETTER NU}": "v",
        "\N{GREEK SMALL LETTER OMICRON}": "o",
        "\N{GREEK SMALL LETTER RHO}": "p",
        "\N{GREEK SMALL LETTER TAU}": "t",
        "\N{GREEK SMALL LETTER UPSILON}": "u",
        "\N{GREEK SMALL LETTER CHI}": "x",
        "\N{GREEK SMALL LETTER OMEGA}": "w",
        "\N{GREEK SMALL LETTER GAMMA}": "y",
        "\N{GREEK LUNATE SIGMA SYMBOL}": "c",
        "\N{GREEK LETTER YOT}": "j",
        # Cyrillic
        "\N{CYRILLIC SMALL LETTER A}": "a",
        "\N{CYRILLIC SMALL LETTER IE}": "e",
        "\N{CYRILLIC SMALL LETTER KA}": "k",
        "\N{CYRILLIC SMALL LETTER O}": "o",
        "\N{CYRILLIC SMALL LETTER PE}": "n",
        "\N{CYRILLIC SMALL LETTER ER}": "p",
        "\N{CYRILLIC SMALL LETTER ES}": "c",
        "\N{CYRILLIC SMALL LETTER U}": "y",
        "\N{CYRILLIC SMALL LETTER STRAIGHT U}": "y",
        "\N{CYRILLIC SMALL LETTER HA}": "x",
        "\N{CYRILLIC SMALL LETTER DZE}": "s",
        "\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}": "l",
        "\N{CYRILLIC SMALL LETTER JE}": "j",
        "\N{CYRILLIC SMALL LETTER KOMI DE}": "d",
        "\N{CYRILLIC SMALL LETTER QA}": "q",
        "\N{CYRILLIC SMALL LETTER WE}": "w",
        "\N{CYRILLIC SMALL LETTER SHHA}": "h",
        "\N{CYRILLIC SMALL LETTER PALOCHKA}": "l",
        "\N{LATIN SMALL LETTER BARRED O}": "o",
    }
)

# Letter pairs that read as one letter; applied once the single letters are prototypes.
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))

# Dropped from a skeleton: spaces, punctuation, invisible characters, and the marks that draw on
# a letter (Mn, Me) or beside it as a modifier (Sk); spacing vowel signs (Mc) are letters' own.
_IGNORED_CATEGORY_PREFIXES = ("Z", "P", "C")
_IGNORED_CATEGORIES = frozenset({"Mn", "Me", "Sk"})

# A marker Meetgate appends: " (2)", " (guest)". Brackets are checked by category, so full-width
# and ornamental brackets count too.
_MARKER_CONTENT = re.compile(r"\d+")


def normalise(name: str) -> str:
    """The name as shown: NFKC, runs of white space as one space, no space at either end.

    Raises InvalidInput for an empty or blank name, one longer than MAX_NAME_CHARS, and one with
    control, format (direction overrides, zero-width characters), private-use, surrogate or
    unassigned characters.
    """
    if len(name) > MAX_RAW_CHARS:
        raise InvalidInput(f"A name can be at most {MAX_NAME_CHARS} characters long.")
    text = unicodedata.normalize("NFKC", name)
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise InvalidInput(
                "The name contains a character that is not allowed "
                "(a control, invisible or text-direction character)."
            )
    text = " ".join(text.split())
    if not any(_is_visible(char) for char in text):
        raise InvalidInput("Please give a name.")
    if len(text) > MAX_NAME_CHARS:
        raise InvalidInput(f"A name can be at most {MAX_NAME_CHARS} characters long.")
    marks = 0
    for char in text:
        marks = marks + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        if marks > MAX_MARKS_PER_LETTER:
            raise InvalidInput("The name has too many accents on one letter.")
    return text


def _is_visible(char: str) -> bool:
    return (
        not char.isspace()
        and char not in _BLANK_LETTERS
        and unicodedata.category(char) not in ("Mn", "Me")
    )


@lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """What `name` looks like, reduced to a comparable string: two names that a reader could take
    for each other have the same skeleton. Total: it never raises, whatever the text."""
    text = _without_ignored(unicodedata.normalize("NFKC", name))
    text = _without_ignored(text.translate(_CAPITALS).casefold())
    text = text.translate(_LETTERS)
    for pair, letter in _PAIRS:
        text = text.replace(pair, letter)
    return text


def _without_ignored(text: str) -> str:
    return "".join(
        char
        for char in unicodedata.normalize("NFD", text)
        if char not in _BLANK_LETTERS
        and not unicodedata.category(char).startswith(_IGNORED_CATEGORY_PREFIXES)
        and unicodedata.category(char) not in _IGNORED_CATEGORIES
    )


def _split_marker(name: str) -> str | None:
    """`name` without its last bracketed group, if that group is one of Meetgate's markers:
    a number or "guest", in any look-alike spelling."""
    text = name.rstrip()
    if not text or unicodedata.category(text[-1]) != "Pe":
        return None
    opening = max(
        (i for i, char in enumerate(text[:-1]) if unicodedata.category(char) == "Ps"), default=-1
    )
    if opening < 0:
        return None
    content = text[opening + 1 : -1].strip()
    rest = text[:opening].rstrip()
    if not rest:
        return None
    if _reads_as_number(content) or skeleton(content) == skeleton(GUEST_MARKER):
        return rest
    return None


def _reads_as_number(content: str) -> bool:
    """Digits, or letters a reader takes for digits ("l0" for 10)."""
    shape = skeleton(content)
    return bool(_MARKER_CONTENT.fullmatch(content)) or (
        bool(shape) and all(char in "lo23456789" for char in shape)
    )


def strip_markers(name: str) -> str:
    """`name` without the trailing markers Meetgate adds (" (2)", " (guest)", look-alikes too)."""
    while (split := _split_marker(name)) is not None:
        name = split
    return name


def assign_name(wanted: str, *, role: Role, guest: bool, taken: Sequence[tuple[str, Role]]) -> str:
    """The name a new admission shows in a room where the live admissions show `taken`.

    It is `wanted`, normalised; a guest's carries " (guest)". When it looks like a name already
    in the room it gets the first free " (2)", " (3)", … in place of any marker it carried.
    A name that looks like a host's, once those markers are taken off both, always gets a number
    unless the newcomer is a host: "Host Name (2)" typed by an attendee is renumbered by
    Meetgate, so a look-alike of a host never shows without a number Meetgate chose.
    """
    name = normalise(wanted)
    if guest:
        name = f"{strip_markers(name)} ({GUEST_MARKER})"
    shapes = {skeleton(other) for other, _ in taken}
    like_a_host = role is not Role.HOST and _host_base(name) in {
        _host_base(other) for other, other_role in taken if other_role is Role.HOST
    }
    if not like_a_host and skeleton(name) not in shapes:
        return name
    base = strip_markers(name)
    if guest:
        base = f"{base} ({GUEST_MARKER})"
    # k -> skeleton(f"{base} ({k})") is one-to-one, so among len(taken) + 1 numbers one is free.
    for number in range(2, len(taken) + 3):
        candidate = f"{base} ({number})"
        if skeleton(candidate) not in shapes:
            return candidate
    raise InvalidInput("This name cannot be used in this room right now.")


def _host_base(name: str) -> str:
    return skeleton(strip_markers(name))
