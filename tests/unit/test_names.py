"""Display names: normalisation, refusals, confusable skeletons, and the name a ticket shows."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Collection, Sequence
from importlib.resources import files

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.admission.names import (
    FIRST_BATCH,
    MAX_NAME_CHARS,
    MAX_NUMBER,
    _without_ignored,
    claim_shown_name,
    host_shape,
    name_choices,
    normalise,
    shown_claim,
    skeleton,
    strip_markers,
)
from gateway.errors import InvalidInput
from gateway.store.memory import MemoryStore
from gateway.store.records import Role

HOST, ATTENDEE = Role.HOST, Role.ATTENDEE
CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"


def assign_name(
    wanted: str,
    *,
    role: Role,
    guest: bool,
    taken: Sequence[tuple[str, Role]],
    reserved: Collection[str] = (),
) -> str:
    """The name a newcomer is shown under in a room whose live admissions show `taken`, as the
    pipeline claims it: `taken` claimed first (as a move carries names over), then the
    newcomer's choices, in a store of its own."""

    async def claim() -> str:
        store, until = MemoryStore(), time.time() + 3600
        # Hosts first: where the drawn room holds one shape twice (no real room does), the
        # host's claim and its mark stand.
        in_order = sorted(taken, key=lambda shown: shown[1] is not HOST)
        for n, (name, other_role) in enumerate(in_order):
            await store.claim_name("room", shown_claim(name, other_role, f"taken-{n}", until))
        choices = name_choices(wanted, role=role, guest=guest, reserved=reserved)
        return await claim_shown_name(store, "room", choices, "newcomer", until)

    return asyncio.run(claim())


def refused(name: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        normalise(name)
    return caught.value.shown()


# Normalisation


def test_white_space_is_collapsed_and_trimmed() -> None:
    assert normalise("  Ada \u00a0\u3000 Lovelace\u2003") == "Ada Lovelace"


def test_full_width_letters_become_ascii() -> None:
    assert normalise("\uff21\uff44\uff41") == "Ada"


def test_a_name_of_exactly_the_limit_is_kept() -> None:
    assert normalise("x" * MAX_NAME_CHARS) == "x" * MAX_NAME_CHARS


def test_accents_are_kept_in_the_shown_name() -> None:
    assert normalise("Jose\u0301 Nu\u0303n\u0303ez") == "Jos\u00e9 N\u0169\u00f1ez"


# Bad input: each a refusal with a plain message


def test_empty_name_is_refused() -> None:
    assert "give a name" in refused("")


def test_white_space_only_name_is_refused() -> None:
    assert "give a name" in refused(" \u00a0\u3000 ")


def test_blank_looking_letters_are_refused() -> None:
    assert "give a name" in refused("\u3164\u3164")  # HANGUL FILLER draws as nothing
    assert "give a name" in refused("\u2800")  # BRAILLE PATTERN BLANK


def test_combining_marks_alone_are_refused() -> None:
    assert "give a name" in refused("\u0301\u0302")


def test_one_character_too_long_is_refused() -> None:
    assert f"at most {MAX_NAME_CHARS}" in refused("x" * (MAX_NAME_CHARS + 1))


def test_huge_name_is_refused() -> None:
    assert f"at most {MAX_NAME_CHARS}" in refused("A" * 1_000_000)


def test_name_that_grows_past_the_limit_under_nfkc_is_refused() -> None:
    # U+FDFA expands to 18 characters under NFKC.
    assert f"at most {MAX_NAME_CHARS}" in refused("\ufdfa" * 4)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\n", "\r", "\t", "\x7f", "\x85"])
def test_control_characters_are_refused(char: str) -> None:
    assert "not allowed" in refused(f"Ada{char}Lovelace")


@pytest.mark.parametrize(
    "char",
    [
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u202d",  # LEFT-TO-RIGHT OVERRIDE
        "\u202b",  # RIGHT-TO-LEFT EMBEDDING
        "\u2067",  # RIGHT-TO-LEFT ISOLATE
        "\u200f",  # RIGHT-TO-LEFT MARK
    ],
)
def test_text_direction_controls_are_refused(char: str) -> None:
    assert "not allowed" in refused(f"Ada {char}ecalevol")


@pytest.mark.parametrize(
    "char",
    [
        "\u200d",  # ZERO WIDTH JOINER
        "\u200c",  # ZERO WIDTH NON-JOINER
        "\u200b",  # ZERO WIDTH SPACE
        "\u2060",  # WORD JOINER
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE
        "\u00ad",  # SOFT HYPHEN
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    ],
)
def test_zero_width_and_other_invisible_characters_are_refused(char: str) -> None:
    assert "not allowed" in refused(f"Wang{char} Dan")


def test_private_use_characters_are_refused() -> None:
    assert "not allowed" in refused("Ada \ue000")


def test_unassigned_code_points_are_refused() -> None:
    assert "not allowed" in refused("Ada \u0378")


def test_lone_surrogates_are_refused() -> None:
    assert "not allowed" in refused("Ada \ud800")


def test_stacked_combining_marks_are_refused() -> None:
    assert "accents" in refused("Ada" + "\u0300\u0301\u0302\u0303\u0304\u0306")


# Skeletons


def test_cyrillic_a_collides_with_latin_a() -> None:
    assert skeleton("Wang Dan") == skeleton(f"Wang D{CYRILLIC_A}n")


def test_a_longer_name_does_not_collide_with_its_prefix() -> None:
    assert skeleton("Ada") != skeleton("Ada Lovelace")


@pytest.mark.parametrize(
    ("original", "look_alike"),
    [
        ("Ada Lovelace", "\uff21\uff44\uff41 Lovelace"),  # full-width
        ("Ada Lovelace", "ada lovelace"),  # case
        ("Ada Lovelace", "Ada Iovelace"),  # capital I for l
        ("Ada Lovelace", "Ada 1ovelace"),  # digit one for l
        ("Ada Lovelace", "Ada |ovelace"),  # vertical bar for l
        ("Bob Olsen", "Bob 0lsen"),  # digit zero for O
        ("Martin", "rnartin"),  # rn for m
        ("José", "Jose"),  # combining marks dropped
        ("José", "Jose\u0301"),  # decomposed accent
        ("Wang Dan", "Wang-Dan"),  # punctuation
        ("Wang Dan", "Wang  \u2013 Dan"),  # dash variant
        ("O'Brien", "O\u2019Brien"),  # quote variant
        ("Hilde Host", "\u0397ilde Host"),  # Greek capital eta
        ("Hilde Host", "Hilde H\u03bfst"),  # Greek omicron
        ("Paul Price", "\u0420aul \u0420rice"),  # Cyrillic capital er
        ("Sascha", "\u0455as\u0441ha"),  # Cyrillic dze and es
        ("Jiri", "\u0458\u0456r\u0456"),  # Cyrillic je and i
        ("Diego", "\u0501ie\u0261o"),  # Komi de, script g
        ("Kate Voss", "\u03baate \u03bdoss"),  # Greek kappa, nu
        ("Tina", "\u03c4\u03b9na"),  # Greek tau, iota
        ("Hoxy", "Ho\u0445\u0443"),  # Cyrillic ha, u
        ("Anna", "\u0391\u039d\u039d\u0391"),  # Greek capitals
    ],
)
def test_look_alikes_collide(original: str, look_alike: str) -> None:
    assert skeleton(original) == skeleton(look_alike)


@pytest.mark.parametrize(
    ("one", "other"),
    [("Ada", "Ida"), ("Wang Dan", "Wang Dang"), ("Ada (2)", "Ada (3)"), ("Li", "Lu")],
)
def test_different_names_do_not_collide(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)


@given(st.text(max_size=200))
def test_skeleton_never_raises(text: str) -> None:
    assert isinstance(skeleton(text), str)


def test_markers_are_stripped_in_any_spelling() -> None:
    assert strip_markers("Hilde Host (2)") == "Hilde Host"
    assert strip_markers("Hilde Host (guest) (12)") == "Hilde Host"
    assert strip_markers("Hilde Host\uff08\uff12\uff09") == "Hilde Host"  # full-width
    assert strip_markers("Hilde Host (l0)") == "Hilde Host"  # letters read as 10
    assert strip_markers("Hilde Host (gu\u0435st)") == "Hilde Host"  # Cyrillic e
    assert strip_markers("Hilde Host (Berlin)") == "Hilde Host (Berlin)"
    assert strip_markers("(2)") == "(2)"


# The name a ticket shows


def test_a_free_name_is_kept_as_given() -> None:
    assert assign_name(" Ada  Lovelace ", role=ATTENDEE, guest=False, taken=[]) == "Ada Lovelace"


def test_a_prefix_of_a_taken_name_is_free() -> None:
    assert assign_name("Ada", role=ATTENDEE, guest=False, taken=[("Ada Lovelace", HOST)]) == "Ada"


def test_bad_wanted_name_is_refused() -> None:
    with pytest.raises(InvalidInput):
        assign_name("Ada\u202e", role=ATTENDEE, guest=False, taken=[])


def test_guests_are_marked() -> None:
    assert assign_name("Ada", role=ATTENDEE, guest=True, taken=[]) == "Ada (guest)"


def test_a_guest_marker_is_not_repeated() -> None:
    assert assign_name("Ada (guest)", role=ATTENDEE, guest=True, taken=[]) == "Ada (guest)"


def test_a_guest_cannot_carry_a_number_of_their_own() -> None:
    assert assign_name("Ada (2)", role=ATTENDEE, guest=True, taken=[]) == "Ada (guest)"


def test_a_look_alike_of_a_taken_name_gets_a_visible_suffix() -> None:
    shown = assign_name(
        f"Wang D{CYRILLIC_A}n", role=ATTENDEE, guest=False, taken=[("Wang Dan", ATTENDEE)]
    )
    assert shown.endswith(" (2)")
    assert skeleton(shown) != skeleton("Wang Dan")


def test_suffixes_count_up_past_taken_ones() -> None:
    taken = [("Ada", ATTENDEE), ("Ada (2)", ATTENDEE), ("ADA (3)", ATTENDEE)]
    assert assign_name("Ada", role=ATTENDEE, guest=False, taken=taken) == "Ada (4)"


def test_a_typed_number_is_replaced_on_collision() -> None:
    taken = [("Ada", ATTENDEE), ("Ada (2)", ATTENDEE)]
    assert assign_name("Ada (2)", role=ATTENDEE, guest=False, taken=taken) == "Ada (3)"


def test_a_guest_colliding_with_a_guest_gets_a_suffix() -> None:
    taken = [("Ada (guest)", ATTENDEE)]
    assert assign_name("Ada", role=ATTENDEE, guest=True, taken=taken) == "Ada (guest) (2)"


def test_an_attendee_named_like_a_host_gets_a_suffix() -> None:
    taken = [("Hilde Host", HOST)]
    assert assign_name("Hilde Host", role=ATTENDEE, guest=False, taken=taken) == "Hilde Host (2)"


def test_a_confusable_of_a_hosts_name_gets_a_suffix() -> None:
    taken = [("Hilde Host", HOST)]
    for look_alike in ["\u0397ilde H\u03bfst", "HILDE HOST", "Hi1de Host", "Hilde-Host"]:
        shown = assign_name(look_alike, role=ATTENDEE, guest=False, taken=taken)
        assert shown.endswith(" (2)"), look_alike


def test_a_guest_named_like_a_host_is_marked_and_numbered() -> None:
    taken = [("Hilde Host", HOST)]
    shown = assign_name("Hilde Host", role=ATTENDEE, guest=True, taken=taken)
    assert shown == "Hilde Host (guest) (2)"


def test_a_typed_suffix_does_not_pass_for_a_hosts_second_device() -> None:
    # The host's second admission is "Hilde Host (2)"; a troll typing that name is renumbered.
    taken = [("Hilde Host", HOST), ("Hilde Host (2)", HOST)]
    shown = assign_name("Hilde Host (2)", role=ATTENDEE, guest=False, taken=taken)
    assert shown == "Hilde Host (3)"


def test_a_typed_suffix_of_a_hosts_name_is_renumbered_by_meetgate() -> None:
    taken = [("Hilde Host", HOST), ("Hilde Host (2)", ATTENDEE)]
    for typed in ["Hilde Host (2)", "Hilde Host (7)", "Hilde Host\uff08\uff12\uff09"]:
        shown = assign_name(typed, role=ATTENDEE, guest=False, taken=taken)
        assert shown == "Hilde Host (3)", typed


def test_an_unrelated_name_with_a_number_is_kept() -> None:
    taken = [("Hilde Host", HOST)]
    assert assign_name("Team (2)", role=ATTENDEE, guest=False, taken=taken) == "Team (2)"


def test_a_host_keeps_a_name_only_attendees_look_like_with_markers() -> None:
    taken = [("Hilde Host (2)", ATTENDEE)]
    assert assign_name("Hilde Host", role=HOST, guest=False, taken=taken) == "Hilde Host"


def test_a_host_arriving_after_a_namesake_is_numbered_too() -> None:
    taken = [("Hilde Host", ATTENDEE)]
    assert assign_name("Hilde Host", role=HOST, guest=False, taken=taken) == "Hilde Host (2)"


# Names kept for hosts who have not arrived yet


def test_a_name_kept_for_a_host_is_numbered_for_anyone_else() -> None:
    kept = {host_shape("Hilde Host")}
    for look_alike in ["Hilde Host", "H1lde Host", "Hilde Host (2)", "HILDE HOST (guest)"]:
        shown = assign_name(look_alike, role=ATTENDEE, guest=False, taken=[], reserved=kept)
        assert shown == f"{strip_markers(normalise(look_alike))} (2)", look_alike
    guest = assign_name("Hilde Host", role=ATTENDEE, guest=True, taken=[], reserved=kept)
    assert guest == "Hilde Host (guest) (2)"
    assert assign_name("Hilde Hostess", role=ATTENDEE, guest=False, taken=[], reserved=kept) == (
        "Hilde Hostess"
    )


def test_the_host_gets_the_name_kept_for_them() -> None:
    kept = {host_shape("Hilde Host")}
    taken = [("Hilde Host (2)", ATTENDEE)]
    assert assign_name("Hilde Host", role=HOST, guest=False, taken=taken, reserved=kept) == (
        "Hilde Host"
    )


def test_choices_come_in_growing_batches_of_distinct_names() -> None:
    batches = list(name_choices("Ada", role=ATTENDEE, guest=False))
    assert [len(b.names) for b in batches[:3]] == [1, FIRST_BATCH, 2 * FIRST_BATCH]
    names = [name for batch in batches for name in batch.names]
    assert names[:3] == ["Ada", "Ada (2)", "Ada (3)"]
    assert names[-1] == f"Ada ({MAX_NUMBER})"
    assert len({skeleton(name) for name in names}) == len(names)
    assert batches[0].yields_to_host and not batches[1].yields_to_host
    # Kept for a host, the name as given is not among the choices at all.
    kept = next(name_choices("Ada", role=ATTENDEE, guest=False, reserved={host_shape("Ada")}))
    assert kept.names[0] == "Ada (2)" and not kept.yields_to_host
    host = next(name_choices("Ada", role=HOST, guest=False, reserved={host_shape("Ada")}))
    assert host.names[0] == "Ada" and host.host and not host.yields_to_host


def test_a_crowd_of_namesakes_is_numbered_past_the_first_batch() -> None:
    taken = [("Ada", ATTENDEE), *((f"Ada ({n})", ATTENDEE) for n in range(2, 40))]
    assert assign_name("Ada", role=ATTENDEE, guest=False, taken=taken) == "Ada (40)"


def test_past_the_last_number_a_name_is_refused() -> None:
    taken = [("Ada", ATTENDEE), *((f"Ada ({n})", ATTENDEE) for n in range(2, MAX_NUMBER + 1))]
    with pytest.raises(InvalidInput):
        assign_name("Ada", role=ATTENDEE, guest=False, taken=taken)


# Properties

# Few letters, many of them look-alikes of each other, so collisions are common.
LOOK_ALIKE_LETTERS = (
    "Aa\u0430\u03b1\u0410Oo0\u03bf\u043elI1i|\u0456rnmHh\u0397 -"
    "\u0301()2345\uff08\uff12\uff09guest\u0435"
)
names = st.text(alphabet=LOOK_ALIKE_LETTERS, min_size=1, max_size=20)
roles = st.sampled_from([HOST, ATTENDEE])


def valid(name: str) -> bool:
    try:
        normalise(name)
    except InvalidInput:
        return False
    return True


# Each example runs a store on an event loop of its own: no deadline on a busy machine.
@settings(deadline=None)
@given(
    wanted=names,
    role=roles,
    guest=st.booleans(),
    taken=st.lists(st.tuples(names.filter(valid), roles), max_size=8),
)
def test_an_assigned_name_never_looks_like_one_in_the_room(
    wanted: str, role: Role, guest: bool, taken: list[tuple[str, Role]]
) -> None:
    assume(valid(wanted))
    shown = assign_name(wanted, role=role, guest=guest, taken=taken)
    assert skeleton(shown) not in {skeleton(name) for name, _ in taken}
    if role is not HOST:
        hosts = {skeleton(name) for name, other in taken if other is HOST}
        assert skeleton(shown) not in hosts
    if guest:
        assert "(guest)" in shown


# Each example runs a store on an event loop of its own: no deadline on a busy machine.
@settings(deadline=None)
@given(
    host=names.filter(valid),
    typed=st.sampled_from(["", " (2)", " (guest)", "\uff08\uff13\uff09", " (l0)"]),
    shout=st.booleans(),
    guest=st.booleans(),
    others=st.lists(st.tuples(names.filter(valid), roles), max_size=6),
)
def test_a_look_alike_of_a_host_always_shows_a_number_meetgate_chose(
    host: str, typed: str, shout: bool, guest: bool, others: list[tuple[str, Role]]
) -> None:
    wanted = (host.upper() if shout else host) + typed
    assume(valid(wanted))
    taken = [*others, (host, HOST)]
    assume(skeleton(strip_markers(normalise(wanted))) == skeleton(strip_markers(host)))
    shown = assign_name(wanted, role=ATTENDEE, guest=guest, taken=taken)
    assert shown.endswith(")") and shown[shown.rindex("(") + 1 : -1].isdigit()
    assert strip_markers(shown) == strip_markers(normalise(wanted))


@given(
    wanted=names,
    role=roles,
    guest=st.booleans(),
    taken=st.lists(st.tuples(names.filter(valid), roles), max_size=8),
)
def test_assigning_again_into_the_grown_room_stays_unique(
    wanted: str, role: Role, guest: bool, taken: list[tuple[str, Role]]
) -> None:
    assume(valid(wanted))
    first = assign_name(wanted, role=role, guest=guest, taken=taken)
    second = assign_name(wanted, role=role, guest=guest, taken=[*taken, (first, role)])
    assert skeleton(second) != skeleton(first)


@given(
    wanted=names,
    kept=st.lists(names.filter(valid), min_size=1, max_size=4),
    guest=st.booleans(),
    taken=st.lists(st.tuples(names.filter(valid), roles), max_size=6),
)
def test_a_look_alike_of_a_kept_name_never_shows_without_a_number(
    wanted: str, kept: list[str], guest: bool, taken: list[tuple[str, Role]]
) -> None:
    assume(valid(wanted))
    reserved = {host_shape(name) for name in kept}
    shown = assign_name(wanted, role=ATTENDEE, guest=guest, taken=taken, reserved=reserved)
    if host_shape(normalise(wanted)) in reserved:
        assert shown.endswith(")") and shown[shown.rindex("(") + 1 : -1].isdigit()
    assert skeleton(shown) not in {skeleton(name) for name, _ in taken}


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_names_are_reduced_as_any_other_text(text: str) -> None:
    # ASCII takes a shortcut (one translation); a non-ASCII letter after it takes the long way.
    assert _without_ignored(text + "é") == _without_ignored(text) + "e"


# Unicode's confusables data (UTS #39)


def _unicode_confusables() -> list[tuple[str, str]]:
    """The (character, prototype) pairs of the confusables.txt the package ships."""
    source = files("gateway.data").joinpath("confusables.txt").read_text("utf-8")
    pairs = []
    for line in source.splitlines():
        data = line.partition("#")[0].strip()
        if data:
            char, prototype, _kind = data.split(";")
            pairs.append((chr(int(char, 16)), "".join(chr(int(c, 16)) for c in prototype.split())))
    return pairs


def test_the_package_ships_unicodes_confusables_with_its_license() -> None:
    """Catches the data file missing from the package, cut short, or shipped without the
    Unicode License its redistribution depends on."""
    data = files("gateway.data")
    header = data.joinpath("confusables.txt").read_text("utf-8")[:600]
    assert "Unicode Security Mechanisms for UTS #39" in header
    assert "# Version: 17.0.0" in header
    assert len(_unicode_confusables()) > 6000
    assert "UNICODE LICENSE V3" in data.joinpath("LICENSE-Unicode.txt").read_text("utf-8")


def test_every_character_in_unicodes_data_collides_with_its_prototype() -> None:
    """Catches an entry the parser drops, one Meetgate's own look-alikes override, and capitals
    lost by casefolding before mapping. Only characters a shown name can hold as they are:
    UTS #39 itself decomposes a precomposed letter (NFD) before it looks it up."""
    shown = [
        (char, prototype)
        for char, prototype in _unicode_confusables()
        if unicodedata.normalize("NFKC", char) == char == unicodedata.normalize("NFD", char)
    ]
    assert len(shown) > 2500
    missed = [
        (char, prototype) for char, prototype in shown if skeleton(char) != skeleton(prototype)
    ]
    assert missed == []


@pytest.mark.parametrize(
    ("original", "look_alike"),
    [
        # The examples of UTS #39
        ("paypal", "\u0440\u0430\u0443\u0440\u0430l"),  # Cyrillic er, a, u
        ("scope", "\u0455\u0441\u043e\u0440\u0435"),  # Cyrillic dze, es, o, er, ie
        ("g", "\u210a"),  # script small g
        ("Tom", "Torn"),  # m is read as rn
        # Armenian
        ("Ross", "R\u0585ss"),  # small oh
        ("Luna", "L\u057dna"),  # small seh
        ("Olga", "\u0555lga"),  # capital oh
        # Cherokee
        ("Anna", "\u13aaNN\u13aa"),  # go
        ("Sara", "\u13daara"),  # du
        ("Sara", "\uabaaara"),  # small du, whose capital is the look-alike
        # Lisu
        ("Anna", "\ua4eenna"),  # letter a
        ("Paul", "\ua4d1aul"),  # letter pa
        ("Tom", "\ua4d4o\ua4df"),  # letters ta and ma
    ],
)
def test_unicodes_look_alikes_collide(original: str, look_alike: str) -> None:
    """Catches a script the hand-written table before Unicode's data never covered (Armenian,
    Cherokee, Lisu) and a small letter whose capital only is in the data."""
    assert skeleton(original) == skeleton(look_alike)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("\u738b\u4e39", "\u738b\u521a"),  # two Chinese names
        ("Anna", "Anne"),
        ("Team 5", "Team S"),  # digits other than 0 and 1 stay digits
        ("Ada 2", "Ada Z"),
        ("hans", "\u03b7ans"),  # Greek small eta is not h, though its capital is H
    ],
)
def test_names_unicode_tells_apart_do_not_collide(one: str, other: str) -> None:
    """Catches a mapping that merges letters too eagerly (a whole script to one letter, eta to h
    through its capital)."""
    assert skeleton(one) != skeleton(other)


def test_a_look_alike_in_another_script_of_a_hosts_name_gets_a_number() -> None:
    """Catches the data read but not used where names are claimed."""
    taken = [("Sara Paul", HOST)]
    for look_alike in ["\u13daara \ua4d1aul", "Sara Pa\u057dl", "\uabaaara Paul"]:
        shown = assign_name(look_alike, role=ATTENDEE, guest=False, taken=taken)
        assert shown == f"{look_alike} (2)", look_alike


@pytest.mark.parametrize("text", ["50%", "\u2030", "\u23e8", "\U0001f16d", "m", "vvcl"])
def test_a_skeleton_is_its_own_skeleton(text: str) -> None:
    """Catches a prototype that is not settled: one Unicode's data gives in a compatibility form
    ("%" is "º/₀") would make a name and the spelling of its skeleton differ."""
    assert skeleton(skeleton(text)) == skeleton(text)


@given(st.text(max_size=30))
def test_any_skeleton_is_its_own_skeleton(text: str) -> None:
    assert skeleton(skeleton(text)) == skeleton(text)
