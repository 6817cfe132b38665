"""Tone of a draft reply: politeness, not only sentiment, with reasons a reviewer can read.

VADER alone scores an apology ("sorry for the trouble") as negative and shouting as neutral,
so it is one signal among politeness markers (greeting, thanks, please, apology, sign-off)
and rudeness markers (shouting, blame, dismissive phrases). Offline and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_POLITE = [
    ("greeting", re.compile(r"^\s*(hi|hello|dear|good (morning|afternoon|evening))\b", re.I)),
    ("thanks", re.compile(r"\b(thank you|thanks|appreciate)\b", re.I)),
    ("please", re.compile(r"\bplease\b", re.I)),
    ("apology", re.compile(r"\b(sorry|apologi[sz]e)\b", re.I)),
    ("offer_help", re.compile(r"\b(happy to help|let (me|us) know|just reply|we will help|"
                              r"here to help)\b", re.I)),
    ("sign_off", re.compile(r"\b(best regards|kind regards|best wishes|sincerely|cheers)\b",
                            re.I)),
]
_RUDE = [
    ("shouting", re.compile(r"\b[A-Z]{2,}\b(?:[\s,;:!?.'-]+\b[A-Z]{2,}\b){2,}")),
    ("exclamations", re.compile(r"!{2,}")),
    ("blame", re.compile(r"\b(you should have|your fault|you failed to|you didn'?t even|"
                         r"as i already (said|told)|read the (docs|manual)|obviously|"
                         r"clearly you)\b", re.I)),
    ("dismissive", re.compile(r"\b(not our problem|nothing we can do|deal with it|whatever|"
                              r"stop (asking|emailing)|we can'?t help you)\b", re.I)),
    ("insult", re.compile(r"\b(stupid|idiot|dumb|ridiculous|pathetic|incompetent)\b", re.I)),
]
# Acronyms that are not shouting in a technical reply.
ACRONYMS = frozenset(
    "API APIS SDK SDKS REST HTTP HTTPS JSON XML CSV PDF SMTP SMS MMS DNS TXT CNAME MX SPF DKIM "
    "DMARC SEPA ACH IBAN BIC VAT GST USD EUR GBP HMAC UUID JWT URL URI ID IDS IP IPS SSO SAML SLA "
    "UK US USA EU FAQ CLI TLS SSL AWS GDPR CCPA PO ISO UTC GMT OK 2FA MFA OTP".split())


@dataclass(frozen=True)
class ToneScore:
    """A score in [0, 1] (1 = warm and professional) and why."""

    score: float
    reasons: list[str]


class ToneScorer:
    """Scores tone from VADER sentiment plus politeness and rudeness markers."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()

    def score(self, text: str) -> ToneScore:
        """Score one reply; empty text scores 0."""
        if not text or not text.strip():
            return ToneScore(0.0, ["empty reply"])
        body = text.split("\nSources:")[0]
        compound = self._vader.polarity_scores(body)["compound"]
        score = 0.45 + 0.15 * compound
        reasons = [f"sentiment {compound:+.2f}"]
        for name, pattern in _POLITE:
            if pattern.search(body):
                score += 0.07
                reasons.append(f"+{name}")
        for name, pattern in _RUDE:
            matches = [m.group(0) for m in pattern.finditer(body)]
            if name == "shouting":
                matches = [m for m in matches
                           if len(set(re.findall(r"[A-Z]{2,}", m)) - ACRONYMS) >= 3]
            if matches:
                score -= 0.25
                reasons.append(f"-{name}: {matches[0][:40]!r}")
        return ToneScore(round(min(1.0, max(0.0, score)), 4), reasons)
