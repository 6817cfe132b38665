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
         r"\b(reveal|print|show|repeat|output|display|leak|tell me|give me|share|dump|list)\b"
         r".{0,40}(\b(system|hidden|initial|original|developer)\s+(prompt|instructions?|message)"
         r"|\byour\s+(tool list|tools|configuration|config|prompt|instructions|rules))"),
        ("debug_mode",
         r"\b(debug|developer|maintenance|god|admin)\s+mode\s*[:=]\s*(on|enabled|true)\b"
         r"|\b(enter|activate|switch to)\s+(debug|developer|god|admin)\s+mode\b"),
        ("role_play",
         r"\b(you are now|pretend (to be|you are)|from now on you|"
         r"(?:^|[.!?,:;]\s*|\b(?:please|now|just|you)\s+)act as (a|an|my|if)\b(?! user)|"
         r"roleplay as|"
         r"jailbreak|developer mode|(?-i:\bDAN\b)|stay in character|let'?s play a game|"
         r"you are [A-Z][a-z]+[A-Z]?\w*(bot|gpt|ai)\b)"),
        ("fake_system_turn",
         r"(^|\n)\s*(\[?\s*(system|assistant|tool|function)\s*(message|output|result)?\s*\]?\s*:)"
         r"|<\s*/?\s*(system|tool_output|function_results?|instructions?)\s*>"
         r"|\[\s*/?\s*(system|tool_output|tool|function_call|function_results?)\b[^\]]{0,80}\]"
         r"|```\s*(system|tool)"),
        ("authority_claim",
         r"\b(your|relaypoint'?s?|the)\s+(admin|administrator|developer|ceo|supervisor|"
         r"security team|finance team|openai|anthropic)\s+(says you|said you|has authori[sz]ed|"
         r"authori[sz]es you|instructs? you|told me (that )?(you|the bot))\b"),
        ("hidden_instruction",
         r"<!--.{0,400}(instruction|ignore|assistant|ai|model).{0,400}-->"
         r"|style\s*=\s*[\"'][^\"']*(display\s*:\s*none|font-size\s*:\s*0)"),
        ("directive_to_agent",
         r"\b(support agents?|ai agent|the agent|the assistant|the bot|ai assistant|"
         r"anweisung an den assistenten|instructions for you)\b\s*(:|must|should just|"
         r"are authori[sz]ed|is authori[sz]ed|may now|are below)"
         r"|\b(agent|assistant|bot)\s+(must|should) (just )?(confirm|include|reply|mark)"
         r"|\b(note|attention|memo|message)\s*(to|for)?\s*(the\s+|any\s+)?(ai|assistant|bot|llm|"
         r"language model)\b|\bnew instructions\s*(follow|:|below)"),
        ("fake_authority_block",
         r"(\[|#{2,}|-{3,})[^\]\n]{0,60}\b(internal|approval|admin|priority:\s*highest|"
         r"agent policy|note from)\b[^\]\n]{0,80}(\]|#{2,}|-{3,}|:)"
         r"|\bsupersedes all previous\b"),
        ("extract_prompt",
         r"\b(repeat|translate|print|output)\b.{0,40}\b(everything above|initial instructions|"
         r"system configuration|your instructions|the words 'you are')"),
        ("fake_tool_json", r"\{\s*\"(tool|function|tool_call)\"\s*:"),
        ("foreign_override",
         r"\b(ignor|olvid|vergiss|vergessen|oubli|dimentic|esquec|esqueç|negeer|vergeet)\w*\b"
         r".{0,40}\b(instruc|anweisung|regeln|consigne|istruzion|instruç|instructie|regole|"
         r"reglas|règles)\w*|忽略.{0,20}(指令|指示)|無視.{0,20}指示|(指示|指令).{0,20}(無視|忽略)"),
        ("decode_and_follow",
         r"\b(decode|base64|rot13)\b.{0,60}\b(follow|execute|run|obey|do what|do exactly)"),
        ("exfiltrate",
         r"\b(send|forward|email|post|upload)\b.{0,60}\b(all|every|the)\b.{0,30}"
         r"\b(customer|user|account|api|internal|other)\b.{0,20}\b(data|keys?|records|emails|"
         r"information|details)\b.{0,60}\b(to|at)\b"),
        ("send_data_to_address",
         r"\b(send|email|e-mail|forward|export|upload|post)\b.{0,80}\b(all|every|copies|list|"
         r"full|entire|complete|other customers)\b.{0,160}\bto\s+(\[EMAIL:|\S+@\S+|https?://)"),
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
# Frequent function words of the other languages customers write in most, none of them English.
_FOREIGN = set(
    "el los las usted su para con este esta que por una pero como puede gracias hola nuestro "
    "cuando dónde donde cómo qué les est sont vous votre avec cette qui une des du mais plus "
    "merci bonjour notre nous der die das und ist sind sie ihr ihre für mit dieser dass ein "
    "eine dem nicht auch bitte danke wir unser können wie ich kann gli è sono suo sua per "
    "questo questa che della come più può grazie ciao nostro nostri non il gli sono é são "
    "você seu obrigado olá não het een zijn uw jij voor deze dit niet ook maar kunt bedankt "
    "hallo onze wij de del la le les un una y el mi mis tu se es por al lo je pas à mon ma "
    "mes depuis hier mein meine ich seit zu von auf desde ayer puedo quiero".split()
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
    english = sum(1 for w in words if w in _ENGLISH)
    foreign = sum(1 for w in words if w in _FOREIGN)
    if foreign >= 2 and foreign > english:
        return True
    # Other languages: a long text with almost no English function words. Short English
    # lines ("invalid api key error") have none either, so they are never judged this way.
    return len(words) >= 10 and english / len(words) < 0.05
