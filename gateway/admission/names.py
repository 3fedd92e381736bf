"""Display names: the checks a name passes, its confusable skeleton, and the name a ticket shows.

Pure functions, no I/O. The skeleton follows the idea of Unicode TS #39 with a small hand-written
table for the look-alikes impersonators use; it is deliberately coarse (i, l, I and 1 are one
letter to it), because a false collision only costs a visible " (2)".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from gateway.errors import InvalidInput
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import NameClaim, Role

MAX_NAME_CHARS = 64
# Refused before any work: no name this long can shrink to MAX_NAME_CHARS under NFKC and
# whitespace collapsing that a person would type.
MAX_RAW_CHARS = 16 * MAX_NAME_CHARS
# More stacked combining marks on one letter than any script needs ("Zalgo" text draws over
# the names around it).
MAX_MARKS_PER_LETTER = 4
GUEST_MARKER = "guest"
# A look-alike gets the first free number up to this; the store is asked about the name as given,
# then a first batch of numbers, then batches twice as large, so a crowd of namesakes costs a
# few round trips.
MAX_NUMBER = 999
FIRST_BATCH = 16

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
        raise InvalidInput(N_("A name can be at most {most} characters long."), most=MAX_NAME_CHARS)
    text = unicodedata.normalize("NFKC", name)
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise InvalidInput(
                N_(
                    "The name contains a character that is not allowed "
                    "(a control, invisible or text-direction character)."
                )
            )
    text = " ".join(text.split())
    if not any(_is_visible(char) for char in text):
        raise InvalidInput(N_("Please give a name."))
    if len(text) > MAX_NAME_CHARS:
        raise InvalidInput(N_("A name can be at most {most} characters long."), most=MAX_NAME_CHARS)
    marks = 0
    for char in text:
        marks = marks + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        if marks > MAX_MARKS_PER_LETTER:
            raise InvalidInput(N_("The name has too many accents on one letter."))
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


def _ignored(char: str) -> bool:
    category = unicodedata.category(char)
    return (
        char in _BLANK_LETTERS
        or category.startswith(_IGNORED_CATEGORY_PREFIXES)
        or category in _IGNORED_CATEGORIES
    )


# ASCII text is its own NFD form; its ignored characters (spaces, punctuation, controls, and
# the modifier symbols `^` and `` ` ``) are dropped by one translation.
_ASCII_IGNORED = {code: None for code in range(128) if _ignored(chr(code))}


def _without_ignored(text: str) -> str:
    if text.isascii():
        return text.translate(_ASCII_IGNORED)
    return "".join(char for char in unicodedata.normalize("NFD", text) if not _ignored(char))


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


@dataclass(frozen=True, slots=True)
class NameChoices:
    """One batch of the names a new admission may show in a room, best first, each with the
    shape (skeleton) it would claim there.

    `host_shape` is what the name looks like without Meetgate's markers: a host's claim marks it
    as a host's name; for anyone else, `yields_to_host` says the first choice is the name as
    given, which is passed over while a host whose name looks like it is in the room.
    """

    names: tuple[str, ...]
    shapes: tuple[str, ...]
    host_shape: str
    host: bool
    yields_to_host: bool

    def claim(self, holder: str, expires_at: float) -> NameClaim:
        return NameClaim(
            holder=holder,
            shapes=self.shapes,
            expires_at=expires_at,
            host_shape=self.host_shape,
            host=self.host,
            first_yields_to_host=self.yields_to_host,
        )


def host_shape(name: str) -> str:
    """What a name is compared with hosts' names by: its skeleton without Meetgate's markers, so
    "Hilde Host (2)" and "H1lde Host (guest)" look like "Hilde Host"."""
    return skeleton(strip_markers(name))


def name_choices(
    wanted: str, *, role: Role, guest: bool, reserved: Collection[str] = ()
) -> Iterator[NameChoices]:
    """The names a new admission may show, in batches: `wanted` normalised (a guest's marked
    " (guest)"), then with " (2)", " (3)", … in place of any marker it carried.

    Only a host may show a name that looks like one in `reserved` (the shapes of names kept for
    the room's hosts, `host_shape`) without a number Meetgate chose: for anyone else the name
    as given is left out. Raises InvalidInput for a name `normalise` refuses.
    """
    name = normalise(wanted)
    if guest:
        name = f"{strip_markers(name)} ({GUEST_MARKER})"
    base = strip_markers(name)
    if guest:
        base = f"{base} ({GUEST_MARKER})"
    shape = host_shape(name)
    host = role is Role.HOST
    if host or shape not in reserved:
        # The name as given comes on its own: most names are free, and every shape in a batch
        # is worked out before the store is asked.
        yield NameChoices(
            names=(name,),
            shapes=(skeleton(name),),
            host_shape=shape,
            host=host,
            yields_to_host=not host,
        )
    numbers = iter(range(2, MAX_NUMBER + 1))
    size = FIRST_BATCH
    while names := tuple(f"{base} ({n})" for n in islice(numbers, size)):
        yield NameChoices(
            names=names,
            shapes=tuple(skeleton(choice) for choice in names),
            host_shape=shape,
            host=host,
            yields_to_host=False,
        )
        size *= 2


def shown_claim(name: str, role: Role, holder: str, expires_at: float) -> NameClaim:
    """The claim of a name already shown (carried into another room, say): its own shape, and
    a host's mark when it is a host's."""
    return NameClaim(
        holder=holder,
        shapes=(skeleton(name),),
        expires_at=expires_at,
        host_shape=host_shape(name),
        host=role is Role.HOST,
    )


async def claim_shown_name(
    store: Store, room: str, choices: Iterable[NameChoices], holder: str, expires_at: float
) -> str:
    """The first of `choices` the store lets `holder` claim in `room`, batch by batch: one
    atomic claim decides each, so look-alikes racing in cannot both win. InvalidInput when
    every number is taken."""
    for batch in choices:
        index = await store.claim_name(room, batch.claim(holder, expires_at))
        if index is not None:
            return batch.names[index]
    raise InvalidInput(N_("This name cannot be used in this room right now."))
