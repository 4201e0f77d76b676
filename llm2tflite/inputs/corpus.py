"""Deterministic bilingual (Spanish + English) corpus of simple everyday sentences.

The offline default model is trained from scratch, so it needs text whose domain contains the
codelab prompt "Estoy disfrutando de": a good share of the Spanish lines start with it (and of
the English lines with "I am enjoying the"). Sentences come from templates filled from a small
hand-written lexicon that carries gender, number and agreement information, so every line is
grammatical. Nothing is random beyond one `random.Random(seed)`: the same seed and sizes give
byte-identical files.

The train and held-out sets contain distinct lines and share no line (exact-line disjointness),
so the held-out loss measures generalisation to new combinations, not memorisation.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
from dataclasses import dataclass
from importlib import resources

from llm2tflite import CODELAB_PROMPT
from llm2tflite.core import atomic

SPANISH_PROMPT = CODELAB_PROMPT
ENGLISH_PROMPT = "I am enjoying the"

# =================================================================================================
# Lexicon (the words themselves are data: llm2tflite/data/corpus_lexicon.yaml)
# =================================================================================================

LEXICON_FILE = "corpus_lexicon.yaml"


def _load_lexicon() -> dict:
    import yaml

    text = (resources.files("llm2tflite") / "data" / LEXICON_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _rows(table: str) -> list[list[str]]:
    """The cells of a `a | b | c` table, one list per line."""
    return [[cell.strip() for cell in row.split("|")] for row in table.strip().splitlines()]


_LEXICON = _load_lexicon()


@dataclass(frozen=True)
class Adjective:
    spanish_forms: tuple[str, str, str, str]  # masc. sing., fem. sing., masc. pl., fem. pl.
    english: str

    def spanish(self, gender: str, plural: bool) -> str:
        return self.spanish_forms[(2 if plural else 0) + (1 if gender == "f" else 0)]


def _adjective(masculine: str, english: str, forms: str = "") -> Adjective:
    """Regular Spanish agreement from the masculine singular; `forms` overrides irregular ones."""
    if forms:
        return Adjective(tuple(forms.split()), english)
    if masculine.endswith("o"):
        stem = masculine[:-1]
        return Adjective((masculine, stem + "a", stem + "os", stem + "as"), english)
    if masculine.endswith("e"):
        return Adjective((masculine, masculine, masculine + "s", masculine + "s"), english)
    plural = masculine[:-1] + "ces" if masculine.endswith("z") else masculine + "es"
    return Adjective((masculine, masculine, plural, plural), english)


ADJECTIVES = {
    adjective.spanish_forms[0]: adjective
    for adjective in (_adjective(*row) for row in _rows(_LEXICON["adjectives"]))
}


@dataclass(frozen=True)
class Noun:
    spanish: str
    spanish_plural: str | None  # None: mass noun in Spanish (no plural, no "un/una")
    gender: str  # "m" or "f"
    english: str
    english_plural: str | None  # None: mass noun in English (no plural, no "a/an")
    adjectives: tuple[str, ...]  # keys of ADJECTIVES that make sense with this noun

    @property
    def spanish_countable(self) -> bool:
        return self.spanish_plural is not None

    @property
    def english_countable(self) -> bool:
        return self.english_plural is not None


def _nouns(table: str) -> list[Noun]:
    """Parse `spanish | plural | gender | english | plural | adjectives` rows ("-": mass noun)."""
    nouns = []
    for spanish, spanish_plural, gender, english, english_plural, adjectives in _rows(table):
        nouns.append(
            Noun(
                spanish,
                None if spanish_plural == "-" else spanish_plural,
                gender,
                english,
                None if english_plural == "-" else english_plural,
                tuple(adjectives.split()),
            )
        )
    for noun in nouns:
        unknown = set(noun.adjectives) - set(ADJECTIVES)
        assert not unknown, f"{noun.spanish}: unknown adjectives {unknown}"
    return nouns


_NOUNS = {name: _nouns(table) for name, table in _LEXICON["nouns"].items()}
FOOD = _NOUNS["food"]
DRINKS = _NOUNS["drinks"]
READING = _NOUNS["reading"]
SHOWS = _NOUNS["shows"]
SOUNDS = _NOUNS["sounds"]
THINGS = _NOUNS["things"]
WRITINGS = _NOUNS["writings"]
ROOMS = _NOUNS["rooms"]
SIGHTS = _NOUNS["sights"]
INSTRUMENTS = _NOUNS["instruments"]
# Things one enjoys: the continuations of "Estoy disfrutando de" / "I am enjoying the".
ENJOYABLE_MOMENTS = _NOUNS["enjoyable_moments"]
ANIMALS = _NOUNS["animals"]
# Places described with "ser" (inherent qualities) and "estar" (states).
BUILDINGS = _NOUNS["buildings"]
LANDMARKS = _NOUNS["landmarks"]
_EXTRA_NOUNS = {name: _nouns(table) for name, table in _LEXICON["extra_nouns"].items()}


def _select(nouns: list[Noun], names: str) -> list[Noun]:
    """The nouns whose Spanish singular is in `names` (space-separated, "_" for a space)."""
    wanted = [name.replace("_", " ") for name in names.split()]
    by_name = {noun.spanish: noun for noun in nouns}
    return [by_name[name] for name in wanted]


_SELECTIONS = _LEXICON["selections"]
COOKABLE = _select(FOOD, _SELECTIONS["cookable"])
SPORTS = [tuple(pair) for pair in _LEXICON["sports"]]

# `kind` of an enjoyable noun says which modifier would be redundant ("place" nouns take no
# "en la playa", "time" nouns no "esta tarde").
_PLACE_MOMENTS = set(_LEXICON["place_moments"])
_TIME_MOMENTS = set(_LEXICON["time_moments"])
# Only these read naturally with "mi" ("Estoy disfrutando de mi café", not "de mi sol").
_POSSESSABLE = set(_LEXICON["possessable"])

ENJOYABLE = ENJOYABLE_MOMENTS + _select(
    SOUNDS + SHOWS + READING + DRINKS + FOOD, _SELECTIONS["enjoyable"]
)
BUILDING_STATES = list(_LEXICON["building_states"])
COLORS = set(_LEXICON["colors"])
# Adjectives that describe a dish's current state, so they go with "estar" ("está caliente").
FOOD_STATES = set(_LEXICON["food_states"])


@dataclass(frozen=True)
class Subject:
    spanish: str
    person: int  # index into Verb.spanish_forms: yo, tú, él/ella, nosotros, vosotros, ellos
    english: str
    spanish_dative: str  # for "gustar": "Me gusta", "A mi hermana le gusta"
    drop_pronoun: bool  # Spanish usually omits yo/tú/nosotros

    @property
    def english_third_singular(self) -> bool:
        return self.person == 2


SUBJECTS = [
    Subject(spanish, int(person), english, dative, drop == "yes")
    for spanish, person, english, dative, drop in _rows(_LEXICON["subjects"])
]

# Ages that suit each subject (for "Mi abuela tiene 82 años.").
AGE_RANGES = {name: tuple(ages) for name, ages in _LEXICON["age_ranges"].items()}


@dataclass(frozen=True)
class Place:
    spanish: str
    english: str


PLACES = {key: Place(spanish, english) for key, spanish, english in _rows(_LEXICON["places"])}


@dataclass(frozen=True)
class Verb:
    spanish_forms: tuple[str, str, str, str, str, str]
    spanish_infinitive: str
    english: str  # base form, may be phrasal ("listen to")
    english_third: str
    objects: list  # list[Noun] or the string "sports" / "instruments"
    places: tuple[str, ...]
    habitual: bool  # "los domingos" fits ("leo"), or not ("quiero", "busco")


# What a verb's `objects` may name: a noun table, a selection, or "sports" / "instruments".
_OBJECT_POOLS = {
    **_NOUNS,
    "cookable": COOKABLE,
    "bought_reading": _select(READING, _SELECTIONS["bought_reading"]),
}


def _verb(entry: dict) -> Verb:
    infinitive, *spanish_forms = entry["forms"].split()
    objects = entry["objects"]
    if objects not in ("sports", "instruments"):
        objects = [noun for name in objects.split("+") for noun in _OBJECT_POOLS[name]]
    places = tuple(entry.get("places", "").split())
    english, english_third = entry["english"]
    return Verb(
        tuple(spanish_forms),
        infinitive,
        english,
        english_third,
        objects,
        places,
        entry.get("habitual", True),
    )


VERBS = [_verb(entry) for entry in _LEXICON["verbs"]]

# Verbs that make sense in "Me gusta ..." and "¿Quieres ...?" (not "buscar", "necesitar"...).
PLEASANT_ACTIVITIES = _LEXICON["pleasant_activities"]


def _verbs(infinitives: str) -> list[Verb]:
    by_infinitive = {verb.spanish_infinitive: verb for verb in VERBS}
    return [by_infinitive[name] for name in infinitives.split()]


_CONJUGATIONS = _LEXICON["conjugations"]
ESTAR = _CONJUGATIONS["estar"].split()
SER = _CONJUGATIONS["ser"].split()
TENER = _CONJUGATIONS["tener"].split()
IR = _CONJUGATIONS["ir"].split()


def _pairs(name: str) -> list[tuple[str, ...]]:
    return [tuple(item) for item in _LEXICON[name]]


# Habitual times go with the simple present; "soon" times with the progressive/near future.
HABITUAL_TIMES = _pairs("habitual_times")
SOON_TIMES = _pairs("soon_times")
COMPANY = _pairs("company")
ENJOY_PLACES = list(_LEXICON["enjoy_places"])
DESTINATIONS = _pairs("destinations")
# (Spanish noun phrase, English noun phrase, Spanish verb 3sg, English verb 3sg) for clock times.
SCHEDULES = _pairs("schedules")
# Countable things that appear with numbers: "Hay 12 sillas en la cocina."
_COUNTED = {
    noun.spanish: noun
    for noun in _select(THINGS + READING + FOOD + ANIMALS, _SELECTIONS["counted"])
    + _EXTRA_NOUNS["counted"]
}
THERE_ARE = [
    (_COUNTED[noun], PLACES[place] if isinstance(place, str) else Place(*place))
    for noun, place in _LEXICON["there_are"]
]
OWNABLE = _select(ANIMALS + READING + THINGS, _SELECTIONS["ownable"]) + _EXTRA_NOUNS["ownable"]
PRICED = _select(READING + THINGS, _SELECTIONS["priced"])
LOSABLE = _select(THINGS + READING + ANIMALS, _SELECTIONS["losable"]) + _EXTRA_NOUNS["losable"]
# Things people like or dislike in general ("Me gustan las manzanas.", "I like apples.").
LIKEABLE = FOOD + DRINKS + ANIMALS + _select(SOUNDS + SHOWS + READING, _SELECTIONS["likeable"])
THANKABLE = _pairs("thankable")

# =================================================================================================
# Noun phrases
# =================================================================================================

_SPANISH_DETERMINERS = {
    # masculine singular, feminine singular, masculine plural, feminine plural
    "def": ("el", "la", "los", "las"),
    "indef": ("un", "una", "unos", "unas"),
    "my": ("mi", "mi", "mis", "mis"),
    "your": ("tu", "tu", "tus", "tus"),
    "this": ("este", "esta", "estos", "estas"),
    "our": ("nuestro", "nuestra", "nuestros", "nuestras"),
    "bare": ("", "", "", ""),
}


def spanish_noun_phrase(noun: Noun, determiner: str, plural: bool, adjective: Adjective | None):
    word = noun.spanish_plural if plural else noun.spanish
    article = _SPANISH_DETERMINERS[determiner][(2 if plural else 0) + (noun.gender == "f")]
    phrase = f"{article} {word}".strip()
    if adjective is not None:
        phrase += " " + adjective.spanish(noun.gender, plural)
    return phrase


def _english_indefinite(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def english_noun_phrase(noun: Noun, determiner: str, plural: bool, adjective: Adjective | None):
    word = noun.english_plural if plural else noun.english
    if adjective is not None:
        word = f"{adjective.english} {word}"
    if determiner == "indef":
        # Plural and mass nouns take no indefinite article in English ("apples", "coffee").
        article = "" if plural or not noun.english_countable else _english_indefinite(word)
    elif determiner == "this":
        article = "these" if plural else "this"
    else:
        article = {"def": "the", "my": "my", "your": "your", "our": "our", "bare": ""}[determiner]
    return f"{article} {word}".strip()


def english_generic(noun: Noun) -> str:
    """Generic reference ("I like apples", "I like music")."""
    return noun.english_plural if noun.english_countable else noun.english


def _contract(spanish: str) -> str:
    # "de el" -> "del", "a el" -> "al" (never touches the pronoun "él", which has an accent).
    return re.sub(r"\b([Dd]e|[Aa]) el\b", lambda m: m.group(1) + "l", spanish)


def _sentence(text: str, end: str = ".") -> str:
    text = re.sub(r" +", " ", text).strip()
    # Upper-case the first letter, after any opening "¿" or "¡".
    for i, char in enumerate(text):
        if char.isalpha():
            text = text[:i] + char.upper() + text[i + 1 :]
            break
    return text + end


def _lower_first(text: str) -> str:
    """Lower-case a sentence-initial subject when it moves after a fronted time phrase."""
    if text.split(" ")[0] in {"I", "Ana", "Carlos", "Lucía", "Pablo"}:
        return text
    return text[0].lower() + text[1:]


# =================================================================================================
# Sentence templates: each takes the RNG and returns one finished sentence.
# =================================================================================================


def _maybe(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def _pick_adjective(rng: random.Random, noun: Noun, probability: float) -> Adjective | None:
    if noun.adjectives and _maybe(rng, probability):
        return ADJECTIVES[rng.choice(noun.adjectives)]
    return None


def _enjoy_modifiers(rng: random.Random, noun: Noun) -> tuple[str, str]:
    """Zero to two of: company, place, time (in that order in both languages)."""
    kinds = ["company", "time"]
    if noun.spanish not in _PLACE_MOMENTS:
        kinds.append("place")
    if noun.spanish in _TIME_MOMENTS:
        kinds.remove("time")
    count = rng.choices([0, 1, 2], weights=[0.3, 0.45, 0.25])[0]
    chosen = set(rng.sample(kinds, min(count, len(kinds))))
    spanish, english = [], []
    if "company" in chosen:
        es, en = rng.choice(COMPANY)
        spanish.append(es)
        english.append(en)
    if "place" in chosen:
        place = PLACES[rng.choice(ENJOY_PLACES)]
        spanish.append(place.spanish)
        english.append(place.english)
    if "time" in chosen:
        es, en = rng.choice(SOON_TIMES[:6])  # not "mañana"/"el sábado": this is happening now
        spanish.append(es)
        english.append(en)
    return " ".join(spanish), " ".join(english)


def _enjoyable_phrase(rng, noun: Noun, spanish: bool, first_person: bool) -> str:
    countable = noun.spanish_countable if spanish else noun.english_countable
    plural = countable and noun.spanish not in _TIME_MOMENTS and _maybe(rng, 0.1)
    determiners, weights = ["def", "this"], [0.75, 0.15]
    if first_person and noun.spanish in _POSSESSABLE:
        determiners.append("my")
        weights.append(0.2)
    if countable and not plural:
        determiners.append("indef")
        weights.append(0.1)
    determiner = rng.choices(determiners, weights)[0]
    adjective = _pick_adjective(rng, noun, 0.35)
    if spanish:
        return spanish_noun_phrase(noun, determiner, plural, adjective)
    return english_noun_phrase(noun, determiner, plural, adjective)


def spanish_enjoy_prompt(rng: random.Random) -> str:
    """ "Estoy disfrutando de la música con mis amigos." (the codelab prompt's domain)."""
    noun = rng.choice(ENJOYABLE)
    modifiers, _ = _enjoy_modifiers(rng, noun)
    phrase = _enjoyable_phrase(rng, noun, spanish=True, first_person=True)
    return _sentence(_contract(f"{SPANISH_PROMPT} {phrase} {modifiers}"))


def english_enjoy_prompt(rng: random.Random) -> str:
    """ "I am enjoying the music with my friends."."""
    noun = rng.choice(ENJOYABLE)
    _, modifiers = _enjoy_modifiers(rng, noun)
    adjective = _pick_adjective(rng, noun, 0.35)
    plural = noun.english_countable and noun.spanish not in _TIME_MOMENTS and _maybe(rng, 0.1)
    phrase = english_noun_phrase(noun, "def", plural, adjective)
    return _sentence(f"I am enjoying {phrase} {modifiers}")


def _other_subject(rng: random.Random) -> Subject:
    return rng.choice(SUBJECTS[1:])


def enjoy_other_subject(rng: random.Random, spanish: bool) -> str:
    """ "Mis amigos están disfrutando de la fiesta." / "My friends are enjoying the party."."""
    subject = _other_subject(rng)
    noun = rng.choice(ENJOYABLE)
    modifiers_es, modifiers_en = _enjoy_modifiers(rng, noun)
    phrase = _enjoyable_phrase(rng, noun, spanish, first_person=False)
    if spanish:
        pronoun = "" if subject.drop_pronoun and _maybe(rng, 0.6) else subject.spanish
        verb = ESTAR[subject.person]
        return _sentence(_contract(f"{pronoun} {verb} disfrutando de {phrase} {modifiers_es}"))
    be = "is" if subject.english_third_singular else "are"
    return _sentence(f"{subject.english} {be} enjoying {phrase} {modifiers_en}")


def _verb_object(rng: random.Random, verb: Verb, spanish: bool, possessive: bool = True) -> str:
    if verb.objects == "sports":
        es, en = rng.choice(SPORTS)
        return f"al {es}" if spanish else en
    if verb.objects == "instruments":
        noun = rng.choice(INSTRUMENTS)
        return spanish_noun_phrase(noun, "def", False, None) if spanish else f"the {noun.english}"
    noun = rng.choice(verb.objects)
    countable = noun.spanish_countable if spanish else noun.english_countable
    plural = countable and _maybe(rng, 0.25)
    determiners, weights = ["def", "this"], [0.45, 0.1]
    if possessive:  # "Leo mi libro", but not "Me gusta leer mi libro"
        determiners += ["my", "our"]
        weights += [0.15, 0.05]
    if countable and not plural:
        determiners.append("indef")
        weights.append(0.35)
    else:  # bare plural or mass noun: "Compro manzanas.", "Bebo café."
        determiners.append("bare")
        weights.append(0.35)
    determiner = rng.choices(determiners, weights)[0]
    adjective = _pick_adjective(rng, noun, 0.3)
    if spanish:
        return spanish_noun_phrase(noun, determiner, plural, adjective)
    return english_noun_phrase(noun, determiner, plural, adjective)


def subject_verb_object(rng: random.Random, spanish: bool) -> str:
    """ "Los domingos, mi padre lee el periódico en el jardín." and its English counterpart."""
    subject = rng.choice(SUBJECTS)
    verb = rng.choice(VERBS)
    obj = _verb_object(rng, verb, spanish)
    place = PLACES[rng.choice(verb.places)] if verb.places and _maybe(rng, 0.5) else None
    time = rng.choice(HABITUAL_TIMES) if verb.habitual and _maybe(rng, 0.5) else None
    time_first = time is not None and _maybe(rng, 0.35)
    if spanish:
        pronoun = "" if subject.drop_pronoun and _maybe(rng, 0.7) else subject.spanish
        clause = f"{pronoun} {verb.spanish_forms[subject.person]} {obj}"
        if place:
            clause += " " + place.spanish
        if time and time_first:
            clause = f"{time[0]}, " + (_lower_first(clause.strip()) if pronoun else clause)
        elif time:
            clause += " " + time[0]
        return _sentence(_contract(clause))
    english_verb = verb.english_third if subject.english_third_singular else verb.english
    clause = f"{subject.english} {english_verb} {obj}"
    if place:
        clause += " " + place.english
    if time and time_first:
        clause = f"{time[1]}, {_lower_first(clause)}"
    elif time:
        clause += " " + time[1]
    return _sentence(clause)


def description(rng: random.Random, spanish: bool) -> str:
    """ "La biblioteca es muy tranquila." / "El museo está cerrado los lunes."."""
    degree_es, degree_en = rng.choice([("", ""), ("muy", "very"), ("bastante", "quite")])
    kind = rng.choices(["ser", "estar", "animal", "food"], [0.4, 0.25, 0.15, 0.2])[0]
    if kind == "estar":
        noun, adjective = rng.choice(BUILDINGS), ADJECTIVES[rng.choice(BUILDING_STATES)]
        time_es, time_en = rng.choice(HABITUAL_TIMES[2:9] + SOON_TIMES[:4])
        degree_es, degree_en = (
            ("", "") if adjective.english in {"open", "closed"} else (degree_es, degree_en)
        )
    elif kind == "food":
        noun = rng.choice([n for n in FOOD + DRINKS if set(n.adjectives) & FOOD_STATES])
        adjective = ADJECTIVES[rng.choice(sorted(set(noun.adjectives) & FOOD_STATES))]
        time_es = time_en = ""
    else:
        noun = rng.choice(BUILDINGS if kind == "ser" else ANIMALS)
        adjective = ADJECTIVES[rng.choice(noun.adjectives)]
        time_es = time_en = ""
    if adjective.spanish_forms[0] in COLORS:  # "muy negro" is odd
        degree_es, degree_en = "", ""
    # States of food ("la sopa está caliente") use "estar"; qualities ("es grande") use "ser".
    uses_estar = kind in {"estar", "food"}
    # "Mi casa", "nuestro perro", but not "mi biblioteca".
    determiners = ["def", "def", "this"]
    if kind in {"animal", "food"} or noun.spanish in {"casa", "habitación", "calle"}:
        determiners += ["my", "our"]
    determiner = rng.choice(determiners)
    # "mis calles" is odd: possessives stay singular here.
    singular_only = determiner in {"my", "our"} and kind not in {"animal", "food"}
    if spanish:
        plural = noun.spanish_countable and not singular_only and _maybe(rng, 0.25)
        np = spanish_noun_phrase(noun, determiner, plural, None)
        verb = (ESTAR if uses_estar else SER)[5 if plural else 2]
        agreed = adjective.spanish(noun.gender, plural)
        return _sentence(f"{np} {verb} {degree_es} {agreed} {time_es}")
    plural = noun.english_countable and not singular_only and _maybe(rng, 0.25)
    np = english_noun_phrase(noun, determiner, plural, None)
    return _sentence(f"{np} {'are' if plural else 'is'} {degree_en} {adjective.english} {time_en}")


def likes(rng: random.Random, spanish: bool) -> str:
    """ "A mi hermana le gustan las películas." / "My sister likes movies."."""
    subject = rng.choice(SUBJECTS)
    negative = _maybe(rng, 0.25)
    if _maybe(rng, 0.6):  # a thing
        noun = rng.choice(LIKEABLE)
        if spanish:
            plural = noun.spanish_countable and _maybe(rng, 0.6)
            np = spanish_noun_phrase(noun, "def", plural, None)
            verb = "gustan" if plural else "gusta"
            dative = _with_negation(subject.spanish_dative, negative)
            return _sentence(_contract(f"{dative} {verb} {np}"))
        english = english_generic(noun)
    else:  # an activity
        verb = rng.choice(_verbs(PLEASANT_ACTIVITIES))
        place = PLACES[rng.choice(verb.places)] if verb.places and _maybe(rng, 0.5) else None
        obj = _verb_object(rng, verb, spanish, possessive=False)
        if spanish:
            activity = f"{verb.spanish_infinitive} {obj} {place.spanish if place else ''}"
            dative = _with_negation(subject.spanish_dative, negative)
            return _sentence(_contract(f"{dative} gusta {activity}"))
        english = f"to {verb.english} {obj} {place.english if place else ''}".strip()
    if negative:
        auxiliary = "doesn't" if subject.english_third_singular else "don't"
        return _sentence(f"{subject.english} {auxiliary} like {english}")
    like = "likes" if subject.english_third_singular else "like"
    return _sentence(f"{subject.english} {like} {english}")


def _with_negation(dative: str, negative: bool) -> str:
    # "No me gusta", "A mi hermana no le gusta": "no" goes right before the clitic pronoun.
    if not negative:
        return dative
    words = dative.split(" ")
    return " ".join(words[:-1] + ["no", words[-1].lower()])


def question(rng: random.Random, spanish: bool) -> str:
    kind = rng.choices(["like", "where", "want", "going", "when"], [0.25, 0.2, 0.25, 0.15, 0.15])[0]
    if kind == "like":
        noun = rng.choice(LIKEABLE)
        if spanish:
            plural = noun.spanish_countable and _maybe(rng, 0.5)
            np = spanish_noun_phrase(noun, "def", plural, None)
            return _sentence(f"¿Te {'gustan' if plural else 'gusta'} {np}", "?")
        return _sentence(f"Do you like {english_generic(noun)}", "?")
    if kind == "where":
        if _maybe(rng, 0.4):
            noun = rng.choice(LANDMARKS)
            determiner, plural = "def", False
        else:
            noun = rng.choice(LOSABLE)
            determiner, plural = rng.choice(["def", "my", "your"]), _maybe(rng, 0.2)
        if spanish:
            np = spanish_noun_phrase(noun, determiner, plural, None)
            return _sentence(f"¿Dónde {'están' if plural else 'está'} {np}", "?")
        np = english_noun_phrase(noun, determiner, plural, None)
        return _sentence(f"Where {'are' if plural else 'is'} {np}", "?")
    if kind == "want":
        verb = rng.choice(_verbs(PLEASANT_ACTIVITIES))
        obj = _verb_object(rng, verb, spanish, possessive=False)
        time_es, time_en = rng.choice(SOON_TIMES + [("", "")] * 4)
        if spanish:
            return _sentence(_contract(f"¿Quieres {verb.spanish_infinitive} {obj} {time_es}"), "?")
        return _sentence(f"Do you want to {verb.english} {obj} {time_en}", "?")
    if kind == "going":
        destination_es, destination_en = rng.choice(DESTINATIONS)
        time_es, time_en = rng.choice(SOON_TIMES[2:])
        if spanish:
            return _sentence(f"¿Vas {destination_es} {time_es}", "?")
        return _sentence(f"Are you going {destination_en} {time_en}", "?")
    subject_es, subject_en, verb_es, verb_en = rng.choice(SCHEDULES)
    if spanish:
        return _sentence(f"¿A qué hora {verb_es} {subject_es.lower()}", "?")
    base = {"leaves": "leave", "starts": "start", "opens": "open", "closes": "close"}[verb_en]
    return _sentence(f"What time does {subject_en.lower()} {base}", "?")


def exclamation(rng: random.Random, spanish: bool) -> str:
    """ "¡Qué película tan divertida!" / "What a fun movie!"."""
    noun = rng.choice([n for n in ENJOYABLE + BUILDINGS + ANIMALS + THINGS if n.adjectives])
    adjective = ADJECTIVES[rng.choice(noun.adjectives)]
    if spanish:
        return _sentence(f"¡Qué {noun.spanish} tan {adjective.spanish(noun.gender, False)}", "!")
    if noun.english_countable:
        words = f"{adjective.english} {noun.english}"
        return _sentence(f"What {_english_indefinite(words)} {words}", "!")
    return _sentence(f"What {adjective.english} {noun.english}", "!")


def with_numbers(rng: random.Random, spanish: bool) -> str:
    """Sentences with digits: ages, counts, clock times and prices."""
    kind = rng.choice(["age", "have", "there_are", "schedule", "price"])
    if kind == "age":
        name = rng.choice(sorted(AGE_RANGES))
        subject = next(s for s in SUBJECTS if s.spanish == name)
        age = rng.randint(*AGE_RANGES[name])
        if spanish:
            return _sentence(f"{subject.spanish} tiene {age} años")
        return _sentence(f"{subject.english} is {age} years old")
    if kind == "have":
        subject = rng.choice(SUBJECTS)
        noun, count = rng.choice(OWNABLE), rng.randint(2, 12)
        if spanish:
            pronoun = "" if subject.drop_pronoun and _maybe(rng, 0.7) else subject.spanish
            return _sentence(f"{pronoun} {TENER[subject.person]} {count} {noun.spanish_plural}")
        have = "has" if subject.english_third_singular else "have"
        return _sentence(f"{subject.english} {have} {count} {noun.english_plural}")
    if kind == "there_are":
        noun, place = rng.choice(THERE_ARE)
        count = rng.randint(2, 30)
        if spanish:
            return _sentence(f"Hay {count} {noun.spanish_plural} {place.spanish}")
        return _sentence(f"There are {count} {noun.english_plural} {place.english}")
    if kind == "schedule":
        subject_es, subject_en, verb_es, verb_en = rng.choice(SCHEDULES)
        part_es, part_en, first, last = rng.choice(
            [
                ("", "", 2, 11),
                ("de la mañana", "in the morning", 7, 11),
                ("de la tarde", "in the afternoon", 2, 7),
                ("de la noche", "in the evening", 8, 11),
            ]
        )
        hour = rng.randint(first, last)
        if spanish:
            return _sentence(f"{subject_es} {verb_es} a las {hour} {part_es}")
        return _sentence(f"{subject_en} {verb_en} at {hour} {part_en}")
    noun, price = rng.choice(PRICED), rng.randint(2, 60)
    determiner = rng.choice(["def", "this", "my"])
    if spanish:
        np = spanish_noun_phrase(noun, determiner, False, None)
        return _sentence(f"{np} cuesta {price} euros")
    np = english_noun_phrase(noun, determiner, False, None)
    return _sentence(f"{np} costs {price} euros")


def going(rng: random.Random, spanish: bool) -> str:
    """ "Los sábados, mi padre va al mercado." / "We are going to the beach tomorrow."."""
    subject = rng.choice(SUBJECTS)
    destination_es, destination_en = rng.choice(DESTINATIONS)
    habitual = _maybe(rng, 0.5)
    time_es, time_en = rng.choice(HABITUAL_TIMES if habitual else SOON_TIMES[2:])
    company_es, company_en = rng.choice(COMPANY) if _maybe(rng, 0.3) else ("", "")
    if spanish:
        pronoun = "" if subject.drop_pronoun and _maybe(rng, 0.7) else subject.spanish
        return _sentence(f"{pronoun} {IR[subject.person]} {destination_es} {company_es} {time_es}")
    if habitual:
        verb = "goes" if subject.english_third_singular else "go"
    else:
        be = {0: "am", 2: "is"}.get(subject.person, "are")
        verb = f"{be} going"
    return _sentence(f"{subject.english} {verb} {destination_en} {company_en} {time_en}")


def thanks(rng: random.Random, spanish: bool) -> str:
    thing_es, thing_en = rng.choice(THANKABLE)
    extra_es, extra_en = rng.choice([("", ""), ("muchas", "very much")])
    if spanish:
        return _sentence(f"{extra_es} gracias por {thing_es}")
    if extra_en:
        return _sentence(f"Thank you {extra_en} for {thing_en}")
    return _sentence(f"Thank you for {thing_en}")


# (template, weight) per language. The prompt templates carry about a quarter of each language
# once repeats are rejected (their short lines repeat more often than the long ones).
# The templates both languages share, with (Spanish, English) weights.
_SHARED_TEMPLATES = [
    (enjoy_other_subject, 0.05, 0.05),
    (subject_verb_object, 0.27, 0.28),
    (description, 0.09, 0.09),
    (likes, 0.09, 0.10),
    (question, 0.08, 0.09),
    (exclamation, 0.03, 0.03),
    (with_numbers, 0.07, 0.07),
    (going, 0.06, 0.06),
    (thanks, 0.01, 0.01),
]


def _language_templates(enjoy_prompt, enjoy_weight: float, spanish: bool) -> list:
    shared = [
        (functools.partial(template, spanish=spanish), weights[0] if spanish else weights[1])
        for template, *weights in _SHARED_TEMPLATES
    ]
    return [(enjoy_prompt, enjoy_weight), *shared]


SPANISH_TEMPLATES = _language_templates(spanish_enjoy_prompt, 0.30, spanish=True)
ENGLISH_TEMPLATES = _language_templates(english_enjoy_prompt, 0.25, spanish=False)
SPANISH_SHARE = 0.55


def sample_sentence(rng: random.Random) -> str:
    templates = SPANISH_TEMPLATES if rng.random() < SPANISH_SHARE else ENGLISH_TEMPLATES
    template = rng.choices([t for t, _ in templates], [w for _, w in templates])[0]
    return template(rng)


def generate_corpus(seed: int, train_lines: int, heldout_lines: int) -> tuple[list[str], list[str]]:
    """Return (train, heldout): distinct sentences, no sentence in both, in generation order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits = []
    for wanted in (train_lines, heldout_lines):
        lines: list[str] = []
        # Rejection of repeats only slows down when the template space is nearly exhausted;
        # cap the attempts so a too-large request fails instead of spinning forever.
        attempts_left = 50 * wanted + 1000
        while len(lines) < wanted:
            if attempts_left == 0:
                raise ValueError(
                    f"could not draw {wanted} distinct new sentences (got {len(lines)}); "
                    "the templates cannot produce that many"
                )
            attempts_left -= 1
            sentence = sample_sentence(rng)
            if sentence not in seen:
                seen.add(sentence)
                lines.append(sentence)
        splits.append(lines)
    return splits[0], splits[1]


def write_lines(path, lines: list[str]) -> None:
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llm2tflite.inputs.corpus",
        description="Generate a deterministic Spanish + English corpus (train and held-out).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-lines", type=int, default=20000)
    parser.add_argument("--heldout-lines", type=int, default=1500)
    parser.add_argument(
        "--out-train", required=True, help="Train text file, one sentence per line."
    )
    parser.add_argument("--out-heldout", required=True, help="Held-out text file (disjoint).")
    args = parser.parse_args(argv)
    if args.train_lines < 1 or args.heldout_lines < 1:
        parser.error("--train-lines and --heldout-lines must be positive")
    train, heldout = generate_corpus(args.seed, args.train_lines, args.heldout_lines)
    write_lines(args.out_train, train)
    write_lines(args.out_heldout, heldout)
    print(
        f"wrote {len(train)} train lines to {args.out_train} and "
        f"{len(heldout)} held-out lines to {args.out_heldout}"
    )


if __name__ == "__main__":
    main()
