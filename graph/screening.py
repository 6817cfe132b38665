"""Cheap, explainable checks on ticket text that decide whether a machine may answer alone.

Ticket text is data, never instructions. These checks do not try to "clean" an injection; they
flag it so the ticket is never auto-sent and a human sees why.
"""

from __future__ import annotations

import re

_INJECTION_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for name, pattern in [
        ("override_instructions",
         r"\b(ignore|disregard|forget|override|bypass|skip)\b.{0,40}\b(all |any |the |your )?"
         r"(previous|prior|above|earlier|preceding|system|original|existing)?\s*"
         r"(instructions?|prompts?|rules|guidelines|directives|polic(y|ies)|guardrails)"),
        ("reveal_prompt",
         r"\b(reveal|print|show|repeat|output|display|leak|tell me|give me|share)\b.{0,40}"
         r"\b(system|hidden|initial|original|developer)\s+(prompt|instructions?|message)"),
        ("role_play",
         r"\b(you are now|act as|pretend (to be|you are)|from now on you|roleplay as|"
         r"jailbreak|developer mode|\bDAN\b)"),
        ("fake_system_turn",
         r"(^|\n)\s*(\[?\s*(system|assistant|tool|function)\s*(message|output|result)?\s*\]?\s*:)"
         r"|<\s*/?\s*(system|tool_output|function_results?|instructions?)\s*>"
         r"|```\s*(system|tool)"),
        ("authority_claim",
         r"\b(the )?(admin|administrator|developer|ceo|supervisor|openai|anthropic)"
         r"\s+(says|said|has authori[sz]ed|authori[sz]es|approved|instructs?)\b"),
        ("hidden_instruction", r"<!--.{0,400}(instruction|ignore|assistant|ai|model).{0,400}-->"),
        ("decode_and_follow",
         r"\b(decode|base64|rot13)\b.{0,60}\b(follow|execute|run|obey|do what)"),
        ("exfiltrate",
         r"\b(send|forward|email|post|upload)\b.{0,60}\b(all|every|the)\b.{0,30}"
         r"\b(customer|user|account|api|internal|other)\b.{0,20}\b(data|keys?|records|emails|"
         r"information|details)\b.{0,60}\b(to|at)\b"),
        ("policy_override",
         r"\b(issue|grant|approve|process)\b.{0,30}\b(full |immediate )?(refund|credit)\b.{0,40}"
         r"\b(without|no)\b.{0,20}\b(verification|checks?|approval|review|questions)"),
    ]
]

# Frequent English function words; a support question in English almost always has several.
_ENGLISH = set(
    "the a an is are was were be been to of and or in on for with my your our i you we it this "
    "that what how why when can could would should do does did not no yes have has had please "
    "thanks thank hi hello there me us if but from at by about which will just get".split()
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def injection_signals(text: str) -> list[str]:
    """Names of the injection patterns found in `text` (empty when none)."""
    return [name for name, pattern in _INJECTION_PATTERNS if pattern.search(text or "")]


def looks_non_english(text: str) -> bool:
    """True when the text is clearly not English (we answer in English only)."""
    words = [w.lower() for w in _WORD.findall(text or "")]
    if not words:
        return False
    non_latin = sum(1 for w in words if any(ord(c) > 0x24F for c in w))
    if non_latin / len(words) > 0.3:
        return True
    if len(words) < 4:
        return False
    english = sum(1 for w in words if w in _ENGLISH)
    return english / len(words) < 0.08
