"""The built-in demo task: determinism, split hygiene, the German grammar it encodes, and its
word alignments."""

import re
from collections import Counter

import pytest

from nmt.demo_align import parse_links, word_links
from nmt.demo_data import (
    MAX_WORDS,
    MIN_WORDS,
    Clause,
    Coordination,
    Generator,
    NounPhrase,
    Prepositional,
    PronounPhrase,
    TimePhrase,
    generate_aligned,
    generate_pairs,
    write_demo_data,
)
from nmt.demo_lexicon import (
    ADJECTIVES,
    NOUNS,
    PLACES,
    PRONOUNS,
    VERBS,
    de_number,
    de_ordinal_dative,
    en_number,
    en_ordinal,
)
from nmt.errors import DataError

SUFFIXES = ("align", "de", "en")


def noun(en: str):
    return next(n for n in NOUNS + PLACES if n.en == en)


def adjective(en: str):
    return next(a for a in ADJECTIVES if a.en == en)


def verb(de_participle: str):
    return next(v for v in VERBS if v.de_participle == de_participle)


def pronoun(en: str):
    return PronounPhrase(next(p for p in PRONOUNS if p.en == en))


def render(clause: Clause) -> tuple[str, str, str]:
    return (
        " ".join(clause.english()),
        " ".join(clause.german_main()),
        " ".join(clause.german_subordinate()),
    )


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_demo_data(tmp_path / "a", seed=3, train=200, dev=20, test=20)
    b = write_demo_data(tmp_path / "b", seed=3, train=200, dev=20, test=20)
    c = write_demo_data(tmp_path / "c", seed=4, train=200, dev=20, test=20)
    assert sorted(a) == [f"{s}.{ext}" for s in ("dev", "test", "train") for ext in SUFFIXES]
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["train.en"].read_bytes() != c["train.en"].read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no staging


def test_splits_sizes_lengths_and_no_overlap(tmp_path):
    files = write_demo_data(tmp_path, seed=1, train=1000, dev=100, test=100)
    lines = {name: path.read_text(encoding="utf-8").splitlines() for name, path in files.items()}
    assert [
        len(lines[f"{s}.{lang}"]) for s in ("train", "dev", "test") for lang in ("en", "de")
    ] == [
        1000,
        1000,
        100,
        100,
        100,
        100,
    ]
    train, dev, test = (set(lines[f"{s}.en"]) for s in ("train", "dev", "test"))
    assert len(train) == 1000 and not (train & dev) and not (train & test) and not (dev & test)
    for en, de in zip(lines["train.en"], lines["train.de"], strict=True):
        assert MIN_WORDS <= len(en.split()) <= MAX_WORDS
        assert en[0].isupper() and de[0].isupper() and en.endswith(".") and de.endswith(".")
        assert "  " not in en + de and en.strip() == en and de.strip() == de


def test_bad_sizes_write_nothing(tmp_path):
    with pytest.raises(DataError, match="--dev must be zero or positive"):
        write_demo_data(tmp_path / "out", dev=-1)
    assert not (tmp_path / "out").exists()


def test_translation_is_a_function_of_the_source():
    """Without de-duplication, every repeated English sentence gets the same German."""
    generator = Generator(5)
    seen: dict[str, str] = {}
    repeats = 0
    for _ in range(30_000):
        en, de = generator.pair()
        repeats += en in seen
        assert seen.setdefault(en, de) == de, en
    assert repeats > 100  # short sentences recur, so the check has teeth


def test_the_task_exercises_reordering_agreement_and_numbers():
    text = "\n".join(de for _, de in generate_pairs(2, 3000))
    for pattern in [
        r", dass .* (hat|haben|ist|sind)\.",  # perfect at the very end of a subordinate clause
        r", weil ",
        r"\b(macht|machen) .* (auf|zu)\.",  # separable particle at the end
        r"\b(aufmacht|zumachen|aufhebt|anruft|ankommen|abfährt)\.",  # rejoined when verb-final
        r"\b(Heute|Gestern|Morgen|Am \w+) (sieht|hat|ist|sind|haben|kommt|steht)\b",  # inversion
        r"\bkeinen\b",
        r"\bnicht\b",
        r"\bim\b",
        r"\bins\b",
        r"\bin den\b",
        r"\bmit dem\b",
        r"\b\w+und(zwanzig|dreißig|vierzig|fünfzig|sechzig|siebzig|achtzig|neunzig)\b",
        r"\bam \w+ten (Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|"
        r"November|Dezember)\b",
    ]:
        assert re.search(pattern, text), pattern


def test_vocabulary_is_small():
    words = Counter()
    for en, _ in generate_pairs(3, 5000):
        words.update(re.findall(r"[\w']+", en.lower()))  # forty-two counts as forty, two
    assert 200 <= len(words) <= 350


@pytest.mark.parametrize(
    "n, en, de",
    [
        (1, "one", "eins"),
        (7, "seven", "sieben"),
        (12, "twelve", "zwölf"),
        (16, "sixteen", "sechzehn"),
        (20, "twenty", "zwanzig"),
        (21, "twenty-one", "einundzwanzig"),
        (37, "thirty-seven", "siebenunddreißig"),
        (42, "forty-two", "zweiundvierzig"),
        (99, "ninety-nine", "neunundneunzig"),
    ],
)
def test_numbers(n, en, de):
    assert (en_number(n), de_number(n)) == (en, de)


@pytest.mark.parametrize(
    "n, en, de",
    [
        (1, "first", "ersten"),
        (2, "second", "zweiten"),
        (3, "third", "dritten"),
        (7, "seventh", "siebten"),
        (8, "eighth", "achten"),
        (12, "twelfth", "zwölften"),
        (19, "nineteenth", "neunzehnten"),
        (20, "twentieth", "zwanzigsten"),
        (23, "twenty-third", "dreiundzwanzigsten"),
        (30, "thirtieth", "dreißigsten"),
        (31, "thirty-first", "einunddreißigsten"),
    ],
)
def test_ordinals(n, en, de):
    assert (en_ordinal(n), de_ordinal_dative(n)) == (en, de)


def test_noun_phrases_decline_by_case_gender_and_article():
    dog = NounPhrase(noun("dog"), "the", False, (adjective("big"),))
    assert [" ".join(dog.german(c)) for c in ("nom", "acc", "dat")] == [
        "der große Hund",
        "den großen Hund",
        "dem großen Hund",
    ]
    a_dog = NounPhrase(noun("dog"), "a", False, (adjective("old"),))
    assert " ".join(a_dog.english()) == "an old dog"
    assert [" ".join(a_dog.german(c)) for c in ("nom", "acc", "dat")] == [
        "ein alter Hund",
        "einen alten Hund",
        "einem alten Hund",
    ]
    child = NounPhrase(noun("child"), "my", False, (adjective("tired"),))
    assert [" ".join(child.german(c)) for c in ("nom", "acc", "dat")] == [
        "mein müdes Kind",
        "mein müdes Kind",
        "meinem müden Kind",
    ]
    cats = NounPhrase(noun("cat"), "num", True, (adjective("black"),), count=3)
    assert " ".join(cats.english()) == "three black cats"
    assert " ".join(cats.german("acc")) == "drei schwarze Katzen"
    books = NounPhrase(noun("book"), "bare", True, (adjective("new"),))
    assert " ".join(books.german("dat")) == "neuen Büchern"
    our = NounPhrase(noun("woman"), "our", False)
    assert " ".join(our.german("dat")) == "unserer Frau"


def test_main_and_subordinate_word_order():
    man = NounPhrase(noun("man"), "the", False)
    dog = NounPhrase(noun("dog"), "the", False, (adjective("big"),))
    seen = Clause(man, "past", verb=verb("gesehen"), direct=dog)
    assert render(seen) == (
        "the man saw the big dog",
        "der Mann hat den großen Hund gesehen",
        "der Mann den großen Hund gesehen hat",
    )
    door = NounPhrase(noun("door"), "the", False)
    today = TimePhrase(["today"], ["heute"])
    opens = Clause(pronoun("she"), "present", verb=verb("aufgemacht"), direct=door, time=today)
    assert render(opens) == (
        "she opens the door today",
        "sie macht heute die Tür auf",
        "sie heute die Tür aufmacht",
    )
    opens.time_first = True
    assert " ".join(opens.english()) == "today she opens the door"
    assert " ".join(opens.german_main()) == "heute macht sie die Tür auf"


def test_negation_uses_kein_for_indefinites_and_nicht_otherwise():
    child = NounPhrase(noun("child"), "the", False)
    a_car = NounPhrase(noun("car"), "a", False, negated=True)
    buy = verb("gekauft")
    assert render(Clause(child, "present", True, buy, direct=a_car)) == (
        "the child does not buy a car",
        "das Kind kauft kein Auto",
        "das Kind kein Auto kauft",
    )
    the_car = NounPhrase(noun("car"), "the", False)
    assert render(Clause(pronoun("I"), "past", True, buy, direct=the_car)) == (
        "I did not buy the car",
        "ich habe das Auto nicht gekauft",
        "ich das Auto nicht gekauft habe",
    )
    tired = TimePhrase(["tired"], ["müde"])
    dogs = NounPhrase(noun("dog"), "the", True)
    assert render(Clause(dogs, "past", True, predicate=tired)) == (
        "the dogs were not tired",
        "die Hunde waren nicht müde",
        "die Hunde nicht müde waren",
    )


def test_ditransitive_and_prepositions():
    give = verb("gegeben")
    teacher = NounPhrase(noun("teacher"), "the", False)
    child = NounPhrase(noun("child"), "a", False)
    apples = NounPhrase(noun("apple"), "num", True, count=2)
    clause = Clause(teacher, "present", verb=give, direct=apples, indirect=child)
    assert " ".join(clause.english()) == "the teacher gives a child two apples"
    clause.indirect_first = False
    assert " ".join(clause.english()) == "the teacher gives two apples to a child"
    assert " ".join(clause.german_main()) == "der Lehrer gibt einem Kind zwei Äpfel"
    run = verb("gelaufen")
    house = NounPhrase(noun("house"), "the", False)
    garden = NounPhrase(noun("garden"), "my", False)
    into = Clause(pronoun("we"), "past", verb=run, prepositional=Prepositional("into", house))
    assert render(into)[1:] == ("wir sind ins Haus gelaufen", "wir ins Haus gelaufen sind")
    sleep = verb("geschlafen")
    inside = Clause(pronoun("he"), "present", verb=sleep)
    inside.prepositional = Prepositional("in", NounPhrase(noun("garden"), "the", False))
    assert render(inside)[:2] == ("he sleeps in the garden", "er schläft im Garten")
    inside.prepositional = Prepositional("into", garden)
    assert inside.prepositional.german() == ["in", "meinen", "Garten"]
    both = Coordination(
        NounPhrase(noun("cat"), "the", False), NounPhrase(noun("mouse"), "a", False)
    )
    together = Clause(both, "present", verb=sleep)
    together.prepositional = Prepositional("with", NounPhrase(noun("dog"), "the", True))
    assert render(together)[:2] == (
        "the cat and a mouse sleep with the dogs",
        "die Katze und eine Maus schlafen mit den Hunden",
    )


# ---- word alignments


def links(english: list, german: list) -> list[str]:
    """The alignment of two word lists as "english-german" words, in German word order."""
    return [f"{english[i]}-{german[j]}" for i, j in word_links(english, german)]


def test_alignment_files_match_the_text_and_cover_every_german_word(tmp_path):
    files = write_demo_data(tmp_path, seed=6, train=1500, dev=50, test=50)
    unaligned_english = Counter()
    for split in ("train", "dev", "test"):
        en, de, align = (
            files[f"{split}.{ext}"].read_text("utf-8").splitlines() for ext in SUFFIXES[::-1]
        )
        assert len(en) == len(de) == len(align)
        for source, target, line in zip(en, de, align, strict=True):
            pairs = parse_links(line)
            source, target = source.split(), target.split()
            assert all(0 <= i < len(source) and 0 <= j < len(target) for i, j in pairs), line
            assert pairs == sorted(set(pairs), key=lambda p: (p[1], p[0]))
            assert {j for _, j in pairs} == set(range(len(target))), (source, target, line)
            aligned = {i for i, _ in pairs}
            unaligned_english.update(w for i, w in enumerate(source) if i not in aligned)
    assert set(unaligned_english) == {"to", "of"}  # "gives a book to ...", "the first of May"


def test_alignments_are_a_function_of_the_source():
    seen: dict[str, list] = {}
    for en, _, pairs in generate_aligned(8, 3000):
        assert seen.setdefault(en, pairs) == pairs


def test_alignment_of_a_number_and_a_verb_final_perfect():
    cats = NounPhrase(noun("cat"), "num", True, (adjective("black"),), count=42)
    assert links(cats.english(), cats.german("acc")) == [
        "forty-two-zweiundvierzig", "black-schwarze", "cats-Katzen",
    ]  # fmt: skip
    man = NounPhrase(noun("man"), "the", False)
    dog = NounPhrase(noun("dog"), "the", False, (adjective("big"),))
    seen = Clause(man, "past", verb=verb("gesehen"), direct=dog)  # the man saw the big dog
    assert links(seen.english(), seen.german_subordinate()) == [
        "the-der", "man-Mann", "the-den", "big-großen", "dog-Hund", "saw-gesehen", "saw-hat",
    ]  # fmt: skip


def test_alignment_of_a_separable_verb_main_and_verb_final():
    door = NounPhrase(noun("door"), "the", False)
    today = TimePhrase(["today"], ["heute"])
    opens = Clause(pronoun("she"), "present", verb=verb("aufgemacht"), direct=door, time=today)
    english = opens.english()  # she opens the door today
    assert links(english, opens.german_main()) == [
        "she-sie", "opens-macht", "today-heute", "the-die", "door-Tür", "opens-auf",
    ]  # fmt: skip
    assert links(english, opens.german_subordinate()) == [
        "she-sie", "today-heute", "the-die", "door-Tür", "opens-aufmacht",
    ]  # fmt: skip
    ball = NounPhrase(noun("ball"), "a", False, negated=True)
    picked = Clause(pronoun("we"), "past", True, verb("aufgehoben"), direct=ball)
    assert links(picked.english(), picked.german_main()) == [  # we did not pick up a ball
        "we-wir", "did-haben", "not-keinen", "a-keinen", "ball-Ball", "pick-aufgehoben",
        "up-aufgehoben",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "index, expected",
    [
        (  # The children say that our dog ran into my house in the morning.
            21,
            "The-Die children-Kinder say-sagen, that-dass our-unser dog-Hund in-am the-am "
            "morning.-Morgen into-in my-mein house-Haus ran-gelaufen ran-ist.",
        ),
        (  # Our beautiful woman knows that the doctors hold the cup on the twenty-third of April.
            31,
            "Our-Unsere beautiful-schöne woman-Frau knows-weiß, that-dass the-die doctors-Ärzte "
            "on-am the-am twenty-third-dreiundzwanzigsten April.-April the-die cup-Tasse "
            "hold-halten.",
        ),
    ],
)
def test_alignment_of_generated_sentences(index, expected):
    en, de, pairs = list(generate_aligned(3, index + 1))[index]
    en, de = en.split(), de.split()
    assert " ".join(f"{en[i]}-{de[j]}" for i, j in pairs) == expected
