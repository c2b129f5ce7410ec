"""Word alignments of the built-in demo task: which English words each German word translates.

The generator (nmt.demo_data) builds both sentences of a pair from the same phrases, so it
knows the alignment exactly. Every word it emits is a `Word`, a str that carries keys; an
English word carries its own key, a German word the keys of the English words it translates,
and the two are aligned when they share a key.

`nmt demo-data` writes the alignments as {train,dev,test}.align, one line per sentence pair, in
the Pharaoh format of Moses and fast_align: space-separated "i-j" links from source (English)
word i to target (German) word j, 0-based over whitespace-separated words (the final "." and a
clause's "," belong to the word they follow), ordered by j, then i.

Conventions. Links are many-to-many where the languages fuse or split words:

* "im Garten" <- "in the garden": im links to "in" and "the"; so do "ins" ("into the") and
  "am" ("on the" in dates, "in the" before morning / evening);
* "kein" / "keinen" links to "not" (and to "a" when English has one);
* a verb: the finite German verb links to the English word that carries tense and person
  ("sees", "saw", or the "does" / "did" of a negation); the lexical German forms (present
  verb, participle, separable particle, the fused "aufmacht") link to the English lexical verb
  and its English particle ("picks up", "looks for"); so "hat ... gesehen" <- "saw" twice;
* a number or ordinal is one word on both sides ("forty-two" <- "zweiundvierzig").

In this grammar every German word translates some English word (articles from English
determiners, "nicht" from "not", auxiliaries from the tensed English verb), so every target
word is aligned. Some English words have no German counterpart and stay unaligned: "of" in
dates ("on the first of May" -> "am ersten Mai") and the "to" of "gives a book to the child".
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class Word(str):
    """A generated word with the alignment keys it shares with the other language."""

    keys: tuple[Hashable, ...]

    def __new__(cls, text: str, *keys: Hashable) -> Word:
        word = super().__new__(cls, text)
        word.keys = keys
        return word

    def suffixed(self, suffix: str) -> Word:
        """The word with punctuation attached, same keys: "sagt" -> "sagt,"."""
        return Word(self + suffix, *self.keys)


def word_links(source: Sequence[Word], target: Sequence[Word]) -> list[tuple[int, int]]:
    """(i, j) for every source word i and target word j sharing a key, ordered by j, then i."""
    words_of: dict[Hashable, list[int]] = {}
    for i, word in enumerate(source):
        for key in word.keys:
            words_of.setdefault(key, []).append(i)
    return [
        (i, j)
        for j, word in enumerate(target)
        for i in sorted({i for key in word.keys for i in words_of.get(key, ())})
    ]


def format_links(links: Sequence[tuple[int, int]]) -> str:
    """Pharaoh format: "0-0 1-1 2-3"."""
    return " ".join(f"{i}-{j}" for i, j in links)


def parse_links(line: str) -> list[tuple[int, int]]:
    """The inverse of `format_links`."""
    return [(int(i), int(j)) for i, j in (link.split("-") for link in line.split())]
