"""The lexicon of the demo task (nmt/demo_data.py): every word it uses, with its English
and German forms, and the German inflection tables its grammar applies.

Nouns (and places) with plurals, gender and tags saying what a verb or adjective may combine
with; adjectives with their stacking order; verbs with their present forms, participle,
auxiliary, kind (transitive, ditransitive, intransitive, motion, separable) and particles;
pronouns; the definite article and the endings of ein-words and adjectives by case, gender
and number; number words (units before tens in German), ordinals and dates. Data only: the
phrases built from it and the seeded generator are in nmt/demo_data.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # "m", "f" or "n"
    tags: tuple[str, ...]

    @property
    def de_dat_pl(self) -> str:
        """Dative plural adds -n unless the plural already ends in -n or -s."""
        return self.de_pl if self.de_pl.endswith(("n", "s")) else self.de_pl + "n"


def _nouns(tags: str, rows: str) -> list[Noun]:
    out = []
    for row in rows.strip().splitlines():
        en, en_pl, de, de_pl, gender, *extra = row.split()
        out.append(Noun(en, en_pl, de, de_pl, gender, tuple(tags.split()) + tuple(extra)))
    return out


NOUNS = (
    _nouns(
        "person animate",
        """
        man men Mann Männer m
        woman women Frau Frauen f
        child children Kind Kinder n
        girl girls Mädchen Mädchen n
        teacher teachers Lehrer Lehrer m
        doctor doctors Arzt Ärzte m
        friend friends Freund Freunde m
        sister sisters Schwester Schwestern f
        brother brothers Bruder Brüder m
        mother mothers Mutter Mütter f
        father fathers Vater Väter m
        cook cooks Koch Köche m
        """,
    )
    + _nouns(
        "animal animate",
        """
        dog dogs Hund Hunde m washable
        cat cats Katze Katzen f washable
        bird birds Vogel Vögel m
        horse horses Pferd Pferde n washable
        mouse mice Maus Mäuse f
        cow cows Kuh Kühe f
        """,
    )
    + _nouns(
        "thing",
        """
        book books Buch Bücher n portable buyable readable writable
        letter letters Brief Briefe m portable readable writable
        newspaper newspapers Zeitung Zeitungen f portable buyable readable
        cup cups Tasse Tassen f portable buyable washable
        key keys Schlüssel Schlüssel m portable
        ball balls Ball Bälle m portable buyable
        hat hats Hut Hüte m portable buyable
        shoe shoes Schuh Schuhe m portable buyable washable
        flower flowers Blume Blumen f portable buyable paintable
        picture pictures Bild Bilder n portable buyable paintable
        bag bags Tasche Taschen f portable buyable openable
        box boxes Kiste Kisten f portable openable
        door doors Tür Türen f openable
        window windows Fenster Fenster n openable
        table tables Tisch Tische m buyable
        chair chairs Stuhl Stühle m buyable
        car cars Auto Autos n vehicle buyable washable
        bicycle bicycles Fahrrad Fahrräder n vehicle buyable washable
        """,
    )
    + _nouns(
        "food portable buyable",
        """
        apple apples Apfel Äpfel m washable
        cake cakes Kuchen Kuchen m
        egg eggs Ei Eier n
        banana bananas Banane Bananen f
        """,
    )
    + _nouns(
        "transport",
        """
        bus buses Bus Busse m
        train trains Zug Züge m
        """,
    )
)

PLACES = _nouns(
    "place",
    """
    garden gardens Garten Gärten m
    kitchen kitchens Küche Küchen f
    park parks Park Parks m
    school schools Schule Schulen f
    house houses Haus Häuser n
    city cities Stadt Städte f
    room rooms Zimmer Zimmer n
    forest forests Wald Wälder m
    """,
)


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str
    order: int  # English/German order when two are stacked: lower first
    tags: tuple[str, ...]  # noun tags it can describe

    def declined(self, ending: str) -> str:
        if self.de.endswith("e") and ending.startswith("e"):
            return self.de + ending[1:]  # müde + en -> müden
        return self.de + ending


ADJECTIVES = [
    Adjective("beautiful", "schön", 0, ("animate", "thing", "food", "transport")),
    Adjective("big", "groß", 1, ("animate", "thing", "transport")),
    Adjective("small", "klein", 1, ("animate", "thing", "food", "transport")),
    Adjective("happy", "glücklich", 1, ("animate",)),
    Adjective("tired", "müde", 1, ("animate",)),
    Adjective("hungry", "hungrig", 1, ("animate",)),
    Adjective("friendly", "freundlich", 1, ("animate",)),
    Adjective("fast", "schnell", 1, ("animal", "vehicle", "transport")),
    Adjective("fresh", "frisch", 1, ("food",)),
    Adjective("old", "alt", 2, ("animate", "thing", "transport")),
    Adjective("young", "jung", 2, ("animate",)),
    Adjective("new", "neu", 2, ("thing", "transport")),
    Adjective("red", "rot", 3, ("thing", "transport")),
    Adjective("blue", "blau", 3, ("thing", "transport")),
    Adjective("green", "grün", 3, ("thing", "food")),
    Adjective("black", "schwarz", 3, ("animal", "thing")),
    Adjective("white", "weiß", 3, ("animal", "thing")),
]

# Definite article and the endings of ein / mein / unser / kein, by (case, gender-or-"pl").
DEFINITE = {
    ("nom", "m"): "der", ("nom", "f"): "die", ("nom", "n"): "das", ("nom", "pl"): "die",
    ("acc", "m"): "den", ("acc", "f"): "die", ("acc", "n"): "das", ("acc", "pl"): "die",
    ("dat", "m"): "dem", ("dat", "f"): "der", ("dat", "n"): "dem", ("dat", "pl"): "den",
}  # fmt: skip
EIN_ENDING = {
    ("nom", "m"): "", ("nom", "f"): "e", ("nom", "n"): "", ("nom", "pl"): "e",
    ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "", ("acc", "pl"): "e",
    ("dat", "m"): "em", ("dat", "f"): "er", ("dat", "n"): "em", ("dat", "pl"): "en",
}  # fmt: skip
# Adjective endings: weak after der-words, mixed after ein-words, strong with no article.
WEAK = {
    ("nom", "m"): "e", ("nom", "f"): "e", ("nom", "n"): "e", ("nom", "pl"): "en",
    ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "e", ("acc", "pl"): "en",
    ("dat", "m"): "en", ("dat", "f"): "en", ("dat", "n"): "en", ("dat", "pl"): "en",
}  # fmt: skip
MIXED = {**WEAK, ("nom", "m"): "er", ("nom", "n"): "es", ("acc", "n"): "es"}
STRONG_PLURAL = {"nom": "e", "acc": "e", "dat": "en"}

POSSESSIVES = {"my": "mein", "our": "unser"}

EN_UNITS = "zero one two three four five six seven eight nine".split()
EN_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
EN_TENS = "- - twenty thirty forty fifty sixty seventy eighty ninety".split()
DE_UNITS = "null eins zwei drei vier fünf sechs sieben acht neun".split()
DE_TEENS = "zehn elf zwölf dreizehn vierzehn fünfzehn sechzehn siebzehn achtzehn neunzehn"
DE_TENS = "- - zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()
EN_ORDINAL_UNITS = "zeroth first second third fourth fifth sixth seventh eighth ninth".split()
EN_ORDINAL_SPECIAL = {10: "tenth", 11: "eleventh", 12: "twelfth"}
DE_ORDINAL_SPECIAL = {1: "erst", 3: "dritt", 7: "siebt", 8: "acht"}


def en_number(n: int) -> str:
    """1..99 in English words: forty-two."""
    if not 0 < n < 100:
        raise ValueError(n)
    if n < 10:
        return EN_UNITS[n]
    if n < 20:
        return EN_TEENS.split()[n - 10]
    tens, unit = divmod(n, 10)
    return EN_TENS[tens] + (f"-{EN_UNITS[unit]}" if unit else "")


def de_number(n: int) -> str:
    """1..99 in German words, units before tens: zweiundvierzig; 1 is "eins"."""
    if not 0 < n < 100:
        raise ValueError(n)
    if n < 10:
        return DE_UNITS[n]
    if n < 20:
        return DE_TEENS.split()[n - 10]
    tens, unit = divmod(n, 10)
    if not unit:
        return DE_TENS[tens]
    return ("ein" if unit == 1 else DE_UNITS[unit]) + "und" + DE_TENS[tens]


def en_ordinal(n: int) -> str:
    """1..31: first, twentieth, twenty-first."""
    if n < 10:
        return EN_ORDINAL_UNITS[n]
    if n in EN_ORDINAL_SPECIAL:
        return EN_ORDINAL_SPECIAL[n]
    if n < 20:
        return en_number(n) + "th"
    tens, unit = divmod(n, 10)
    if not unit:
        return EN_TENS[tens][:-1] + "ieth"  # twenty -> twentieth
    return f"{EN_TENS[tens]}-{EN_ORDINAL_UNITS[unit]}"


def de_ordinal_dative(n: int) -> str:
    """1..31 as used in "am ... Mai": ersten, achten, zwanzigsten, einunddreißigsten."""
    if n in DE_ORDINAL_SPECIAL:
        stem = DE_ORDINAL_SPECIAL[n]
    elif n < 20:
        stem = de_number(n) + "t"
    else:
        stem = de_number(n) + "st"
    return stem + "en"


MONTHS = [
    ("January", "Januar", 31), ("February", "Februar", 29), ("March", "März", 31),
    ("April", "April", 30), ("May", "Mai", 31), ("June", "Juni", 30),
    ("July", "Juli", 31), ("August", "August", 31), ("September", "September", 30),
    ("October", "Oktober", 31), ("November", "November", 30), ("December", "Dezember", 31),
]  # fmt: skip
DAYS = [
    ("Monday", "Montag"), ("Tuesday", "Dienstag"), ("Wednesday", "Mittwoch"),
    ("Thursday", "Donnerstag"), ("Friday", "Freitag"), ("Saturday", "Samstag"),
    ("Sunday", "Sonntag"),
]  # fmt: skip


@dataclass(frozen=True)
class Verb:
    en: str  # base form, without an English particle
    en_s: str  # third person singular present
    en_past: Optional[str]  # simple past; None when it equals the present (read)
    de: tuple[str, str, str]  # present: ich, er/sie/es, wir/sie
    de_participle: str  # full participle, particle included (aufgemacht)
    aux: str  # "haben" or "sein"
    kind: str  # "trans", "ditrans", "intrans", "motion", "separable_intrans"
    objects: tuple[str, ...] = ()  # noun tags allowed as direct object
    subjects: tuple[str, ...] = ("person",)
    particle: str = ""  # German separable particle
    en_particle: str = ""  # English particle: "for" (look for), "up" (pick up), "along"
    en_particle_last: bool = False  # English particle after the object: bring the dog along


def _v(en, en_s, en_past, de, part, kind, objects="", subjects="person", **kw) -> Verb:
    return Verb(
        en,
        en_s,
        en_past,
        tuple(de.split()),
        part,
        kw.pop("aux", "haben"),
        kind,
        tuple(objects.split()),
        tuple(subjects.split()),
        **kw,
    )


ANY_OBJECT = "animate thing food transport"
VERBS = [
    _v("see", "sees", "saw", "sehe sieht sehen", "gesehen", "trans", ANY_OBJECT, "animate"),
    _v("find", "finds", "found", "finde findet finden", "gefunden", "trans", "animal portable"),
    _v("buy", "buys", "bought", "kaufe kauft kaufen", "gekauft", "trans", "buyable"),
    _v("read", "reads", None, "lese liest lesen", "gelesen", "trans", "readable"),
    _v("eat", "eats", "ate", "esse isst essen", "gegessen", "trans", "food", "animate"),
    _v("carry", "carries", "carried", "trage trägt tragen", "getragen", "trans", "portable"),
    _v("need", "needs", "needed", "brauche braucht brauchen", "gebraucht", "trans", "buyable"),
    _v("write", "writes", "wrote", "schreibe schreibt schreiben", "geschrieben", "trans",
       "writable"),
    _v("paint", "paints", "painted", "male malt malen", "gemalt", "trans", "animate paintable"),
    _v("wash", "washes", "washed", "wasche wäscht waschen", "gewaschen", "trans", "washable"),
    _v("look", "looks", "looked", "suche sucht suchen", "gesucht", "trans", "animate portable",
       "animate", en_particle="for"),
    _v("visit", "visits", "visited", "besuche besucht besuchen", "besucht", "trans", "person"),
    _v("take", "takes", "took", "nehme nimmt nehmen", "genommen", "trans",
       "portable transport"),
    _v("love", "loves", "loved", "liebe liebt lieben", "geliebt", "trans", "animate",
       "animate"),
    _v("hold", "holds", "held", "halte hält halten", "gehalten", "trans", "portable"),
    _v("open", "opens", "opened", "mache macht machen", "aufgemacht", "trans", "openable",
       particle="auf"),
    _v("close", "closes", "closed", "mache macht machen", "zugemacht", "trans", "openable",
       particle="zu"),
    _v("pick", "picks", "picked", "hebe hebt heben", "aufgehoben", "trans", "portable",
       particle="auf", en_particle="up"),
    _v("call", "calls", "called", "rufe ruft rufen", "angerufen", "trans", "person",
       particle="an"),
    _v("bring", "brings", "brought", "bringe bringt bringen", "mitgebracht", "trans",
       "portable animal", particle="mit", en_particle="along", en_particle_last=True),
    _v("give", "gives", "gave", "gebe gibt geben", "gegeben", "ditrans", "portable"),
    _v("show", "shows", "showed", "zeige zeigt zeigen", "gezeigt", "ditrans",
       "portable animal"),
    _v("send", "sends", "sent", "schicke schickt schicken", "geschickt", "ditrans",
       "portable"),
    _v("sleep", "sleeps", "slept", "schlafe schläft schlafen", "geschlafen", "intrans",
       subjects="animate"),
    _v("play", "plays", "played", "spiele spielt spielen", "gespielt", "intrans",
       subjects="animate"),
    _v("work", "works", "worked", "arbeite arbeitet arbeiten", "gearbeitet", "intrans"),
    _v("sing", "sings", "sang", "singe singt singen", "gesungen", "intrans",
       subjects="person animal"),
    _v("wait", "waits", "waited", "warte wartet warten", "gewartet", "intrans",
       subjects="animate"),
    _v("run", "runs", "ran", "laufe läuft laufen", "gelaufen", "motion", subjects="animate",
       aux="sein"),
    _v("go", "goes", "went", "gehe geht gehen", "gegangen", "motion", subjects="animate",
       aux="sein"),
    _v("come", "comes", "came", "komme kommt kommen", "gekommen", "motion",
       subjects="animate", aux="sein"),
    _v("get", "gets", "got", "stehe steht stehen", "aufgestanden", "separable_intrans",
       particle="auf", en_particle="up", aux="sein"),
    _v("arrive", "arrives", "arrived", "komme kommt kommen", "angekommen",
       "separable_intrans", subjects="person transport", particle="an", aux="sein"),
    _v("leave", "leaves", "left", "fahre fährt fahren", "abgefahren", "separable_intrans",
       subjects="person transport", particle="ab", aux="sein"),
    _v("come", "comes", "came", "komme kommt kommen", "zurückgekommen", "separable_intrans",
       subjects="person transport", particle="zurück", en_particle="back", aux="sein"),
]  # fmt: skip

AUX = {"haben": ("habe", "hat", "haben"), "sein": ("bin", "ist", "sind")}
SEIN_PAST = ("war", "war", "waren")
EN_BE = {"present": ("am", "is", "are"), "past": ("was", "was", "were")}

# Verbs that take a "that" clause: (English, English 3sg, German present forms).
SAY_VERBS = [
    ("know", "knows", ("weiß", "weiß", "wissen")),
    ("say", "says", ("sage", "sagt", "sagen")),
    ("think", "thinks", ("glaube", "glaubt", "glauben")),
    ("hope", "hopes", ("hoffe", "hofft", "hoffen")),
]


@dataclass(frozen=True)
class Pronoun:
    en: str
    de: str
    person: int  # index into present forms: 0 ich, 1 er/sie, 2 wir/sie


PRONOUNS = [
    Pronoun("I", "ich", 0),
    Pronoun("he", "er", 1),
    Pronoun("she", "sie", 1),
    Pronoun("we", "wir", 2),
    Pronoun("they", "sie", 2),
]
