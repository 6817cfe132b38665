"""The one language detector: which language a text is written in, by function-word counts.

Two questions are asked of it. Intake asks "is this ticket clearly not English?" (we answer
in English only, so it goes to a human); output validation asks "is this reply clearly in
another language than the one requested?" (a failed try, the next model is asked). Both read
the same word table and the same tokeniser, so a word added here changes both the same way.

Cheap on purpose (no model): a support question in English almost always has several of these
words, and a text is only judged when the evidence is clear.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Frequent function words per language. A word may appear under several languages ("de", "la",
# "que"): it then says "not English" but not which language.
_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(text.split()) for lang, text in {
        "en": "the a an is are was were be been to of and or in on for with my your our i you we "
              "it this that what how why when can could would should do does did not no yes have "
              "has had please thanks thank hi hello there me us if but from at by about which "
              "will just get they all into then than after until only also here",
        "es": "el la los las y es son usted su para con este esta que por una del al pero como "
              "más puede gracias hola nuestro cuando dónde donde cómo qué de un mi mis tu se lo "
              "desde ayer puedo quiero",
        "fr": "le la les et est sont vous votre pour avec cette que qui une des du au mais "
              "comme plus peut merci bonjour notre nous de un il se je pas à mon ma mes depuis "
              "hier",
        "de": "der die das und ist sind sie ihr ihre für mit dieser diese dass ein eine den "
              "dem nicht auch bitte danke wir unser können wie ich kann mein meine seit zu von "
              "auf",
        "pt": "os e é são você seu sua para com este esta que por uma ao mas como "
              "mais pode obrigado olá nosso não de um se",
        "it": "il gli le e è sono lei suo sua per con questo questa che una del della al "
              "come più può grazie ciao nostro nostri non la un mi tu se",
        "nl": "de het een en is zijn uw jij voor met deze dit dat die niet ook maar als "
              "kunt bedankt hallo onze wij",
    }.items()
}
ENGLISH_WORDS = _WORDS["en"]
# Any other language's word that is not also English ("is", "die", "en" count as English).
_FOREIGN_WORDS = frozenset().union(*(w for lang, w in _WORDS.items() if lang != "en")) - (
    ENGLISH_WORDS)
# Words of exactly one language name it; shared ones ("de", "la", "que") say nothing.
_LANGUAGE_OF: dict[str, str] = {
    word: lang
    for lang, words in _WORDS.items()
    for word in words
    if sum(word in other for other in _WORDS.values()) == 1
}
SUPPORTED = tuple(_WORDS)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_LAST_LATIN = 0x24F  # beyond Latin Extended-B: Greek, Cyrillic, Arabic, CJK, ...


@dataclass(frozen=True)
class LanguageReading:
    """The counts a text gives: its words, per-language hits, and other-script words."""

    words: int
    english: int
    foreign: int
    non_latin: int
    by_language: Counter[str]


def words_of(text: str) -> list[str]:
    """The lower-cased words of `text`: the one tokeniser of every language question."""
    return [w.lower() for w in _WORD.findall(text or "")]


def read_language(text: str | list[str]) -> LanguageReading:
    """Count the function words and non-Latin words of `text` (or of its `words_of`)."""
    words = words_of(text) if isinstance(text, str) else text
    english = foreign = non_latin = 0
    by_language: Counter[str] = Counter()
    for word in words:  # one pass: intake reads every ticket, validation every draft
        if word in ENGLISH_WORDS:
            english += 1
        elif word in _FOREIGN_WORDS:
            foreign += 1
        lang = _LANGUAGE_OF.get(word)
        if lang is not None:
            by_language[lang] += 1
        if not word.isascii() and any(ord(c) > _LAST_LATIN for c in word):
            non_latin += 1
    return LanguageReading(words=len(words), english=english, foreign=foreign,
                           non_latin=non_latin, by_language=by_language)


def looks_non_english(text: str) -> bool:
    """True when the text is clearly not English (we answer in English only)."""
    r = read_language(text)
    if not r.words:
        return False
    if r.non_latin / r.words > 0.3:
        return True
    if r.foreign >= 2 and r.foreign > r.english:
        return True
    # Other languages: a long text with almost no English function words. Short English
    # lines ("invalid api key error") have none either, so they are never judged this way.
    return r.words >= 10 and r.english / r.words < 0.05


def detect_wrong_language(text: str, expected: str) -> str | None:
    """Return the language the text is clearly written in, if it is not `expected`.

    Short texts and unsupported languages are never judged, and another language must clearly
    dominate, so quoting a foreign phrase is not a failure.
    """
    if expected not in _WORDS:
        return None
    words = words_of(text)
    if len(words) < 8:
        return None
    r = read_language(words)
    counts = r.by_language
    best = max((lang for lang in SUPPORTED if lang != expected), key=counts.__getitem__)
    if counts[best] >= 3 and counts[best] > 2 * counts[expected]:
        return best
    return None


_SEGMENT = re.compile(r"[^\n.!?。！？]+")


def foreign_passage(text: str) -> bool:
    """True when an English ticket carries a sentence in another language.

    Our screening rules and reviewers read English; a request in Portuguese or Japanese appended
    to an English question is a classic way past both, and `looks_non_english` misses it
    because the English part dominates the whole text.
    """
    if read_language(text).english < 3:
        return False  # not an English ticket: looks_non_english decides
    for segment in _SEGMENT.findall(text or ""):
        if sum(1 for c in segment if c.isalpha() and ord(c) > _LAST_LATIN) >= 8:
            return True
        r = read_language(segment)
        if r.words >= 6 and r.foreign >= 3 and r.foreign > 2 * r.english:
            return True
    return False
