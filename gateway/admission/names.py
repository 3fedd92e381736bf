"""Display names: the checks a name passes, its confusable skeleton, and the name a ticket shows.

Pure functions, no I/O but reading Unicode's confusables data once, at the first skeleton.

The skeleton is that of Unicode UTS #39 (section 4): the name in NFD, each character replaced by
its prototype from Unicode's confusables data (`gateway/data/confusables.txt`), NFD again. Two
names a reader could take for each other have the same skeleton. Meetgate's is deliberately
coarser, because a false collision only costs a visible " (2)":

- it is taken of the name in NFKC, the form `normalise` shows (full-width letters are plain ones);
- case is ignored: capitals are mapped first (Greek capital eta is H, its small letter is not h),
  then the text is casefolded and mapped again, so "ADA" is "ada";
- i is l, like I, 1 and | (UTS #39 keeps i apart), and a few Greek and Cyrillic letters UTS #39
  maps to rarer Latin forms (kappa to kra, tau to a small capital T) are the plain letter
  (`_EXTRA_PROTOTYPES`); digits stay digits but for 0 (o) and 1 (l), as in UTS #39;
- spaces, punctuation, invisible characters, combining marks and modifier symbols are dropped
  after the mapping, so a letter UTS #39 takes for punctuation is dropped too;
- "vv" is w and "cl" is d (UTS #39 maps m to "rn" already).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from itertools import islice

from gateway.errors import InvalidInput
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import NameClaim, Role

# Unicode's confusables data for UTS #39, in the package gateway.data.
CONFUSABLES_FILE = "confusables.txt"
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

# What an admission's id looks like (64 hex digits), in either case: no name may, or an attendee
# could take another's id (which their own ticket shows them the shape of) as their name and draw
# an admin's action by that id onto themselves, or pass for it on the roster.
_ID_SHAPED = re.compile(r"[0-9a-f]{64}", re.IGNORECASE)


def id_shaped(text: str) -> bool:
    """Whether `text` looks like an admission's id, which no name may (`normalise` refuses it)."""
    return _ID_SHAPED.fullmatch(text) is not None


# Cc control, Cf format (bidi overrides and isolates, zero-width joiners and spaces, tags),
# Cs surrogates, Co private use, Cn unassigned.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Letters that draw as nothing: a name made of them would show as blank.
_BLANK_LETTERS = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"})

# Look-alikes of Meetgate's own, beside Unicode's, each a prototype of Unicode's taken for the
# Latin letter it passes for in a name. With case ignored, i must read as the l that Unicode
# reads I as, or "IDA" and "Ida" would differ. The others keep what the hand-written table before
# Unicode's data caught: Greek kappa and Cyrillic ka (Unicode's kra), tau (small capital T),
# epsilon and Ukrainian ie (c with bar), chi, omega, and Cyrillic pe (pi).
_EXTRA_PROTOTYPES = {
    "i": "l",
    "\N{LATIN SMALL LETTER KRA}": "k",
    "\N{LATIN LETTER SMALL CAPITAL T}": "t",
    "\N{LATIN SMALL LETTER C WITH BAR}": "e",
    "\N{GREEK SMALL LETTER CHI}": "x",
    "\N{GREEK SMALL LETTER OMEGA}": "w",
    "\N{GREEK SMALL LETTER PI}": "n",
}
# Letter pairs that read as one letter (Unicode's data reads m as rn already); applied once the
# single letters are prototypes and the ignored characters are gone.
_PAIRS = (("vv", "w"), ("cl", "d"))
# Rounds of mapping and casefolding a prototype takes to settle: two for any character in the
# data (a small Cherokee letter folds to its capital, which maps to a Latin capital, which folds).
_MAX_ROUNDS = 8

# Dropped from a skeleton: spaces, punctuation, invisible characters, and the marks that draw on
# a letter (Mn, Me) or beside it as a modifier (Sk); spacing vowel signs (Mc) are letters' own.
_IGNORED_CATEGORY_PREFIXES = ("Z", "P", "C")
_IGNORED_CATEGORIES = frozenset({"Mn", "Me", "Sk"})

# A marker Meetgate appends: " (2)", " (guest)". Brackets are checked by category, so full-width
# and ornamental brackets count too.
_MARKER_CONTENT = re.compile(r"\d+")


def normalise(name: str) -> str:
    """The name as shown: NFKC, runs of white space as one space, no space at either end.

    Raises InvalidInput for an empty or blank name, one longer than MAX_NAME_CHARS, one shaped as
    an admission's id (64 hex digits), and one with control, format (direction overrides,
    zero-width characters), private-use, surrogate or unassigned characters.
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
    if id_shaped(text):
        raise InvalidInput(N_("This looks like a code, not a name. Please give your name."))
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
    prototypes = _prototypes()
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name))
    # Capitals are mapped before casefolding (Greek capital eta is H, its small letter is not h);
    # what casefolding then yields is mapped again, to prototypes that are settled.
    text = _without_ignored(text.translate(prototypes).casefold().translate(prototypes))
    for pair, letter in _PAIRS:
        text = text.replace(pair, letter)
    return text


@cache
def _prototypes() -> dict[int, str]:
    """Each character Unicode's confusables data or `_EXTRA_PROTOTYPES` maps, to its settled
    prototype: mapped, casefolded and in NFKD until that changes nothing. Read at the first
    skeleton, once."""
    source = files("gateway.data").joinpath(CONFUSABLES_FILE).read_text("utf-8-sig")
    table = {ord(char): prototype for char, prototype in _confusables(source)}
    table.update((ord(char), prototype) for char, prototype in _EXTRA_PROTOTYPES.items())
    return {code: _settled(chr(code), table) for code in table}


def _confusables(source: str) -> Iterator[tuple[str, str]]:
    """The (character, prototype) pairs of confusables.txt: `<code> ; <codes> ; MA # comment`."""
    for line in source.splitlines():
        data = line.partition("#")[0].strip()
        if data:
            char, prototype, _kind = data.split(";")
            yield chr(int(char, 16)), "".join(chr(int(code, 16)) for code in prototype.split())


def _settled(char: str, table: dict[int, str]) -> str:
    text = char
    for _ in range(_MAX_ROUNDS):
        # NFKD, not NFD: a few prototypes have compatibility forms ("%" is "º/₀"), and the
        # skeleton of a name is taken of its NFKC form.
        step = unicodedata.normalize("NFKD", text)
        step = unicodedata.normalize("NFKD", step.translate(table).casefold())
        if step == text:
            break
        text = step
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
        bool(shape) and all(char in _digit_shapes() for char in shape)
    )


@cache
def _digit_shapes() -> frozenset[str]:
    return frozenset(skeleton("0123456789"))


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
