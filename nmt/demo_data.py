"""A built-in, seeded English -> German translation task generated from a small grammar.

Every sentence pair is made here, from our own lexicon (about 300 English word forms) and
rules; nothing comes from another corpus. The German side follows standard German grammar
for the fragment covered, so the task needs what real translation needs:

* agreement: articles and adjective endings by gender, number and case (der große Hund /
  den großen Hund / mit dem großen Hund / ein großer Hund / zwei große Hunde), verb
  endings by person and number (ich sehe / er sieht / wir sehen);
* case from syntax: subject nominative, direct object accusative, indirect object and
  objects of "mit" dative, "in" dative for location (im Garten) and accusative for
  direction (in den Garten, ins Haus);
* word order: verb second with inversion after a fronted time phrase (Heute sieht der
  Mann ...), the participle at the end in the perfect (English simple past -> Perfekt:
  hat ... gesehen, ist ... gelaufen), verb-final subordinate clauses after ", dass" and
  ", weil" (..., dass der Mann den Hund gesehen hat), separable verbs whose particle goes
  to the end of a main clause and rejoins the verb in a subordinate one (macht die Tür
  auf / dass sie die Tür aufmacht), "nicht" placement versus "kein" for indefinites;
* number words that reorder inside a word (forty-two -> zweiundvierzig) and dates with
  declined ordinals (on the twenty-first of May -> am einundzwanzigsten Mai).

The mapping is a function: each English sentence has exactly one German translation
(ambiguous English is avoided, e.g. no "you", no past tense of "read"), so a small model
can learn it to a high BLEU. Sentences have 5-15 English words. Output is deterministic
for a seed; train, dev and test never share a source sentence.

The words and inflection tables are in nmt/demo_lexicon.py; this module holds the phrases
and clauses built from them (English and German word order, agreement, alignment keys),
the seeded generator and the writer of the files.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nmt.demo_align import Word, format_links, word_links
from nmt.demo_lexicon import (
    ADJECTIVES,
    AUX,
    DAYS,
    DEFINITE,
    EIN_ENDING,
    EN_BE,
    MIXED,
    MONTHS,
    NOUNS,
    PLACES,
    POSSESSIVES,
    PRONOUNS,
    SAY_VERBS,
    SEIN_PAST,
    STRONG_PLURAL,
    VERBS,
    WEAK,
    Adjective,
    Noun,
    Pronoun,
    Verb,
    de_number,
    de_ordinal_dative,
    en_number,
    en_ordinal,
)
from nmt.errors import DataError

SOURCE_LANG = "en"
TARGET_LANG = "de"
ALIGN_SUFFIX = "align"
MIN_WORDS = 5
MAX_WORDS = 15
DEFAULT_SIZES = {"train": 20_000, "dev": 500, "test": 500}


# --------------------------------------------------------------------------------------------
# Phrases


@dataclass
class NounPhrase:
    noun: Noun
    det: str  # "the", "a", "my", "our", "bare" (plural, no article), "num"
    plural: bool
    adjectives: tuple[Adjective, ...] = ()
    count: int = 0  # for det == "num"
    negated: bool = False  # kein-: "does not see a dog" -> "sieht keinen Hund"

    @property
    def person(self) -> int:
        return 2 if self.plural else 1

    def english(self) -> list[Word]:
        k = id(self)  # alignment keys: (phrase, role); see nmt.demo_align
        words = [Word(a.en, (k, i)) for i, a in enumerate(self.adjectives)]
        words.append(Word(self.noun.en_pl if self.plural else self.noun.en, (k, "noun")))
        if self.det == "a":
            return [Word("an" if words[0][0] in "aeiou" else "a", (k, "det")), *words]
        if self.det == "num":
            return [Word(en_number(self.count), (k, "det")), *words]
        if self.det == "bare":
            return words
        return [Word(self.det, (k, "det")), *words]

    def german(self, case: str) -> list[str]:
        key = (case, "pl" if self.plural else self.noun.gender)
        if self.det == "the":
            article, endings = DEFINITE[key], WEAK
        elif self.negated:
            article, endings = "kein" + EIN_ENDING[key], MIXED
        elif self.det in ("a", "my", "our"):
            stem = "ein" if self.det == "a" else POSSESSIVES[self.det]
            article, endings = stem + EIN_ENDING[key], MIXED
        else:  # bare plural or a number: strong adjective endings
            article = de_number(self.count) if self.det == "num" else ""
            endings = {key: STRONG_PLURAL[case]}
        k = id(self)
        words = [Word(article, (k, "det"))] if article else []
        words += [Word(a.declined(endings[key]), (k, i)) for i, a in enumerate(self.adjectives)]
        if self.plural:
            noun = self.noun.de_dat_pl if case == "dat" else self.noun.de_pl
        else:
            noun = self.noun.de
        return [*words, Word(noun, (k, "noun"))]


@dataclass
class Coordination:
    """Two noun phrases joined by "and": a plural subject."""

    left: NounPhrase
    right: NounPhrase
    person: int = 2

    def english(self) -> list[Word]:
        return [*self.left.english(), Word("and", id(self)), *self.right.english()]

    def german(self, case: str) -> list[Word]:
        return [*self.left.german(case), Word("und", id(self)), *self.right.german(case)]


@dataclass
class PronounPhrase:
    pronoun: Pronoun

    @property
    def person(self) -> int:
        return self.pronoun.person

    def english(self) -> list[Word]:
        return [Word(self.pronoun.en, id(self))]

    def german(self, case: str) -> list[Word]:
        return [Word(self.pronoun.de, id(self))]


@dataclass
class TimePhrase:
    """Fixed words: a time phrase or a copula's complement (tired, forty years old).

    German word j translates the English words at `links[j]`; word for word by default.
    """

    en: list[str]
    de: list[str]
    links: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        links = self.links or tuple((j,) for j in range(len(self.de)))
        k = id(self)
        self.en = [Word(word, (k, i)) for i, word in enumerate(self.en)]
        self.de = [Word(w, *((k, i) for i in ii)) for w, ii in zip(self.de, links, strict=True)]


@dataclass
class Prepositional:
    kind: str  # "in" (location, dative), "into" (direction, accusative), "with" (dative)
    phrase: NounPhrase

    def english(self) -> list[Word]:
        return [Word(self.kind, id(self)), *self.phrase.english()]

    def german(self) -> list[Word]:
        if self.kind == "with":
            return [Word("mit", id(self)), *self.phrase.german("dat")]
        case = "dat" if self.kind == "in" else "acc"
        words = self.phrase.german(case)
        contracted = {("dat", "m"): "im", ("dat", "n"): "im", ("acc", "n"): "ins"}
        key = (case, self.phrase.noun.gender)
        if self.phrase.det == "the" and not self.phrase.plural and key in contracted:
            fused = Word(contracted[key], id(self), *words[0].keys)  # in dem -> im
            return [fused, *words[1:]]
        return [Word("in", id(self)), *words]


@dataclass
class Clause:
    subject: object  # NounPhrase, Coordination or PronounPhrase
    tense: str  # "present" or "past"
    negated: bool = False
    verb: Optional[Verb] = None  # None for the copula
    direct: Optional[NounPhrase] = None
    indirect: Optional[NounPhrase] = None
    indirect_first: bool = True  # English: gives the child a book / gives a book to the child
    prepositional: Optional[Prepositional] = None
    predicate: Optional[TimePhrase] = None  # copula complement (adjective or age), en/de words
    time: Optional[TimePhrase] = None
    time_first: bool = False  # English and German front the time phrase

    # ---- English

    # Alignment keys of the verb group: "tense" (the word carrying tense and person: the
    # English finite verb or do-auxiliary, the German finite verb), "verb" (the lexical verb),
    # "particle" (the English one) and "not".

    def english(self) -> list[Word]:
        p = self.subject.person
        k = id(self)
        words = []
        if self.time and self.time_first:
            words += self.time.en
        words += self.subject.english()
        if self.verb is None:
            words.append(Word(EN_BE[self.tense][p], (k, "tense")))
            if self.negated:
                words.append(Word("not", (k, "not")))
            words += self.predicate.en
        else:
            v = self.verb
            if self.negated:
                aux = "did" if self.tense == "past" else ("does" if p == 1 else "do")
                words += [Word(aux, (k, "tense")), Word("not", (k, "not")), Word(v.en, (k, "verb"))]
            else:
                form = v.en_past if self.tense == "past" else (v.en_s if p == 1 else v.en)
                words.append(Word(form, (k, "verb"), (k, "tense")))
            particle = Word(v.en_particle, (k, "particle"))
            if v.en_particle and not v.en_particle_last:
                words.append(particle)
            if self.indirect is not None and self.indirect_first:
                words += self.indirect.english()
            if self.direct is not None:
                words += self.direct.english()
            if self.indirect is not None and not self.indirect_first:
                words += [Word("to"), *self.indirect.english()]  # "to" stays unaligned
            if v.en_particle and v.en_particle_last:
                words.append(particle)
            if self.prepositional is not None:
                words += self.prepositional.english()
        if self.time and not self.time_first:
            words += self.time.en
        return words

    # ---- German

    def _german_parts(self) -> tuple[list[Word], list[Word], Word, list[Word]]:
        """Middle field, main-clause final verb part, finite verb, subordinate verb cluster."""
        p = self.subject.person
        k = id(self)
        middle = []
        if self.time and not self.time_first:
            middle += self.time.de
        if self.verb is None:
            finite = Word((SEIN_PAST if self.tense == "past" else AUX["sein"])[p], (k, "tense"))
            if self.negated:
                middle.append(Word("nicht", (k, "not")))
            middle += self.predicate.de
            return middle, [], finite, [finite]
        v = self.verb
        lexical = ((k, "verb"), (k, "particle"))
        if self.indirect is not None:
            middle += self.indirect.german("dat")
        if self.direct is not None:
            direct = self.direct.german("acc")
            if self.direct.negated:  # kein- translates "not" (and "a")
                direct[0] = Word(direct[0], *direct[0].keys, (k, "not"))
            middle += direct
        if self.negated and not (self.direct is not None and self.direct.negated):
            middle.append(Word("nicht", (k, "not")))
        if self.prepositional is not None:
            middle += self.prepositional.german()
        if self.tense == "past":
            finite = Word(AUX[v.aux][p], (k, "tense"))
            participle = Word(v.de_participle, *lexical)
            return middle, [participle], finite, [participle, finite]
        finite = Word(v.de[p], (k, "tense"), *lexical)
        end = [Word(v.particle, *lexical)] if v.particle else []
        return middle, end, finite, [Word(v.particle + finite, *finite.keys)]

    def german_main(self) -> list[Word]:
        middle, end, finite, _ = self._german_parts()
        subject = self.subject.german("nom")
        if self.time and self.time_first:
            return [*self.time.de, finite, *subject, *middle, *end]
        return [*subject, finite, *middle, *end]

    def german_subordinate(self) -> list[Word]:
        middle, _, _, cluster = self._german_parts()
        return [*self.subject.german("nom"), *middle, *cluster]


# --------------------------------------------------------------------------------------------
# Random generation


class Generator:
    """Draws sentence pairs from the grammar with a seeded random.Random."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items):
        return items[self.rng.randrange(len(items))]

    # ---- phrases

    def nouns(self, tags) -> list[Noun]:
        return [n for n in NOUNS if any(t in n.tags for t in tags)]

    def adjectives_for(self, noun: Noun) -> tuple[Adjective, ...]:
        options = [a for a in ADJECTIVES if any(t in noun.tags for t in a.tags)]
        roll = self.rng.random()
        k = 0 if roll < 0.6 else (1 if roll < 0.93 else 2)
        chosen: list[Adjective] = []
        while len(chosen) < k:
            a = self.pick(options)
            if all(a.order != c.order for c in chosen):
                chosen.append(a)
        return tuple(sorted(chosen, key=lambda a: a.order))

    def noun_phrase(self, tags, *, allow_number: bool = True, singular: bool = False):
        noun = self.pick(self.nouns(tags))
        plural = not singular and self.chance(0.3)
        if plural:
            dets = ["the"] * 5 + ["my", "our", "bare"] + (["num"] * 2 if allow_number else [])
        else:
            dets = ["the"] * 5 + ["a"] * 3 + ["my", "our"]
        det = self.pick(dets)
        count = self.rng.randint(2, 12) if det == "num" else 0
        return NounPhrase(noun, det, plural, self.adjectives_for(noun), count)

    def place(self, direction: bool) -> Prepositional:
        noun = self.pick(PLACES)
        det = self.pick(["the"] * 6 + ["a", "my", "our"])
        return Prepositional("into" if direction else "in", NounPhrase(noun, det, False))

    def subject(self, tags):
        if ("person" in tags or "animate" in tags) and self.chance(0.25):
            return PronounPhrase(self.pick(PRONOUNS))
        if self.chance(0.06):
            left, right = self.noun_phrase(tags), self.noun_phrase(tags)
            if left.noun != right.noun:
                return Coordination(left, right)
        return self.noun_phrase(tags)

    def time(self, tense: str) -> TimePhrase:
        kinds = ["day", "part", "clock", "date", "month"]
        kinds += ["today", "tomorrow", "every"] if tense == "present" else ["yesterday"] * 2
        kind = self.pick(kinds)
        if kind == "today":
            return TimePhrase(["today"], ["heute"])
        if kind == "tomorrow":
            return TimePhrase(["tomorrow"], ["morgen"])
        if kind == "yesterday":
            return TimePhrase(["yesterday"], ["gestern"])
        if kind == "every":
            if self.chance(0.5):
                return TimePhrase(["every", "day"], ["jeden", "Tag"])
            en, de = self.pick(DAYS)
            return TimePhrase(["every", en], ["jeden", de])
        if kind == "day":
            en, de = self.pick(DAYS)
            return TimePhrase(["on", en], ["am", de])
        if kind == "part":
            en, de = self.pick([("morning", "Morgen"), ("evening", "Abend")])
            return TimePhrase(["in", "the", en], ["am", de], ((0, 1), (2,)))
        if kind == "clock":
            hour = self.rng.randint(1, 12)
            de_hour = "ein" if hour == 1 else de_number(hour)
            return TimePhrase(["at", en_number(hour), "o'clock"], ["um", de_hour, "Uhr"])
        month_en, month_de, days = self.pick(MONTHS)
        if kind == "month":
            return TimePhrase(["in", month_en], ["im", month_de])
        day = self.rng.randint(1, days)
        return TimePhrase(  # "of" stays unaligned
            ["on", "the", en_ordinal(day), "of", month_en],
            ["am", de_ordinal_dative(day), month_de],
            ((0, 1), (2,), (4,)),
        )

    # ---- clauses

    def clause(self, kinds: tuple[str, ...], allow_front_time: bool) -> Clause:
        kind = self.pick(kinds)
        if kind in ("copula", "age"):
            return self.copula_clause(kind == "age", allow_front_time)
        verbs = [v for v in VERBS if v.kind == kind]
        verb = self.pick(verbs)
        tense = "present" if verb.en_past is None or self.chance(0.55) else "past"
        clause = Clause(self.subject(verb.subjects), tense, self.chance(0.2), verb)
        if kind in ("trans", "ditrans"):
            clause.direct = self.noun_phrase(verb.objects, allow_number=not clause.negated)
            if clause.negated and clause.direct.det in ("a", "bare"):
                clause.direct.negated = True
        if kind == "ditrans":
            clause.indirect = self.noun_phrase(("person",))
            clause.indirect_first = self.chance(0.5)
        if kind == "intrans" and self.chance(0.7):
            if self.chance(0.6):
                clause.prepositional = self.place(direction=False)
            else:
                clause.prepositional = Prepositional("with", self.noun_phrase(("animate",)))
        if kind == "motion":
            clause.prepositional = self.place(direction=True)
        time_chance = 0.8 if kind == "separable_intrans" else 0.3
        if self.chance(time_chance):
            clause.time = self.time(tense)
            clause.time_first = allow_front_time and self.chance(0.4)
        return clause

    def copula_clause(self, age: bool, allow_front_time: bool) -> Clause:
        tense = self.pick(["present", "past"])
        if age:
            subject = self.subject(("person", "animal"))
            phrases = [subject.left, subject.right] if isinstance(subject, Coordination) else []
            if isinstance(subject, NounPhrase):
                phrases = [subject]
            animal = any("animal" in phrase.noun.tags for phrase in phrases)
            years = self.rng.randint(1, 20 if animal else 99)
            if years == 1:
                predicate = TimePhrase(["one", "year", "old"], ["ein", "Jahr", "alt"])
            else:
                predicate = TimePhrase(
                    [en_number(years), "years", "old"], [de_number(years), "Jahre", "alt"]
                )
        else:
            subject = self.subject(("animate", "thing", "food", "transport"))
            if isinstance(subject, NounPhrase):
                noun_tags = subject.noun.tags
            elif isinstance(subject, Coordination):
                noun_tags = tuple(set(subject.left.noun.tags) & set(subject.right.noun.tags))
            else:
                noun_tags = ("animate",)
            used = subject.adjectives if isinstance(subject, NounPhrase) else ()
            options = [
                a for a in ADJECTIVES if any(t in noun_tags for t in a.tags) and a not in used
            ]
            adjective = self.pick(options or ADJECTIVES[:3])
            predicate = TimePhrase([adjective.en], [adjective.de])
        clause = Clause(subject, tense, self.chance(0.2), predicate=predicate)
        if self.chance(0.25):
            clause.time = self.time(tense)
            clause.time_first = allow_front_time and self.chance(0.4)
        return clause

    def sentence(self) -> tuple[list[str], list[str]]:
        """One (English words, German words) pair, without final punctuation."""
        roll = self.rng.random()
        simple = ("trans", "trans", "ditrans", "intrans", "motion", "separable_intrans")
        if roll < 0.62:
            clause = self.clause(simple + ("copula",), allow_front_time=True)
            return clause.english(), clause.german_main()
        if roll < 0.68:
            clause = self.clause(("age",), allow_front_time=True)
            return clause.english(), clause.german_main()
        if roll < 0.88:  # X knows/says/thinks/hopes that ...
            en, en_s, forms = self.pick(SAY_VERBS)
            speaker = self.subject(("person",))
            inner = self.clause(simple + ("copula", "age"), allow_front_time=False)
            p = speaker.person
            say = Word(en_s if p == 1 else en, "say"), Word(forms[p] + ",", "say")
            en_words = [*speaker.english(), say[0], Word("that", "that"), *inner.english()]
            de_words = [*speaker.german("nom"), say[1], Word("dass", "that")]
            return en_words, de_words + inner.german_subordinate()
        main = self.clause(("intrans", "copula", "motion"), allow_front_time=True)
        inner = self.clause(simple + ("copula",), allow_front_time=False)
        de_main = main.german_main()
        de_main[-1] = de_main[-1].suffixed(",")
        return (
            [*main.english(), Word("because", "because"), *inner.english()],
            [*de_main, Word("weil", "because"), *inner.german_subordinate()],
        )

    def aligned_pair(self) -> tuple[str, str, list[tuple[int, int]]]:
        """A pair of sentences with MIN_WORDS..MAX_WORDS English words, capitalised, with '.',
        and its word alignment (nmt.demo_align)."""
        while True:
            en, de = self.sentence()
            if MIN_WORDS <= len(en) <= MAX_WORDS:
                return _finish(en), _finish(de), word_links(en, de)

    def pair(self) -> tuple[str, str]:
        """`aligned_pair` without the alignment."""
        return self.aligned_pair()[:2]


def _finish(words: list[str]) -> str:
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def generate_aligned(seed: int, count: int) -> Iterator[tuple[str, str, list[tuple[int, int]]]]:
    """`count` distinct (English, German, alignment) triples for a seed."""
    generator = Generator(seed)
    seen: set[str] = set()
    while len(seen) < count:
        en, de, links = generator.aligned_pair()
        if en not in seen:
            seen.add(en)
            yield en, de, links


def generate_pairs(seed: int, count: int) -> Iterator[tuple[str, str]]:
    """`count` distinct (English, German) pairs for a seed."""
    return ((en, de) for en, de, _ in generate_aligned(seed, count))


def write_demo_data(
    output_dir: str | Path,
    *,
    seed: int = 1234,
    train: int = DEFAULT_SIZES["train"],
    dev: int = DEFAULT_SIZES["dev"],
    test: int = DEFAULT_SIZES["test"],
) -> dict[str, Path]:
    """Write {train,dev,test}.{en,de,align} into `output_dir`; returns {"train.en": path, ...}.

    The .align files hold the word alignments (nmt.demo_align: Pharaoh "i-j" lines).

    The three splits come from one stream of distinct sentences, so they never share a
    source sentence. Files are written to a temporary directory and moved into place at the
    end, so an interrupted run leaves nothing half-written.
    """
    sizes = {"train": train, "dev": dev, "test": test}
    for split, n in sizes.items():
        if n < 0:
            raise DataError(f"--{split} must be zero or positive, got {n}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: exists and is not a directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    triples = generate_aligned(seed, sum(sizes.values()))
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".demo-") as tmp:
        staged = []
        for split, n in sizes.items():
            names = [f"{split}.{suffix}" for suffix in (SOURCE_LANG, TARGET_LANG, ALIGN_SUFFIX)]
            paths = [Path(tmp) / name for name in names]
            with ExitStack() as stack:
                files = [
                    stack.enter_context(open(p, "w", encoding="utf-8", newline="\n")) for p in paths
                ]
                for _ in range(n):
                    en, de, links = next(triples)
                    for file, line in zip(files, (en, de, format_links(links)), strict=True):
                        file.write(line + "\n")
            staged += list(zip(names, paths, strict=True))
        for name, path in staged:
            path.replace(output_dir / name)
            written[name] = output_dir / name
    return written
