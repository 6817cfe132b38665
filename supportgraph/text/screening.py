"""Cheap, explainable checks on ticket text that decide whether a machine may answer alone.

Ticket text is data, never instructions. These checks do not try to "clean" an injection; they
flag it so the ticket is never auto-sent and a human sees why. Which language a ticket is written
in is supportgraph/text/language.py (one detector for tickets and model replies).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator

from supportgraph.text.language import foreign_passage

_INJECTION_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for name, pattern in [
        ("override_instructions",
         r"\b(ignore|disregard|forget)\b.{0,40}\b(all |any |the |your )?"
         r"(previous|prior|above|earlier|preceding|system|original|existing)?\s*"
         r"(instructions?|prompts?|rules|guidelines|directives|guardrails)"
         # "override the default retry policy" is a product question: overriding needs an
         # object that is the assistant's own ("your rules", "all previous instructions").
         r"|\b(ignore|disregard|forget|override|bypass|skip)\b.{0,40}\b(all|any|your|the "
         r"(previous|prior|above|earlier|system|original))\s+(\w+\s+)?"
         r"(instructions?|prompts?|rules|guidelines|directives|polic(y|ies)|guardrails)\b"
         r"(?!\s+(for|on|of|in)\s+(the\s+)?(webhooks?|api|retries|retry|sending|domains?|"
         r"invoices?|billing|accounts?|emails?|sms|messages?))"),
        ("reveal_prompt",
         r"\b(reveal|print|show|repeat|output|display|leak|tell me|give me|share|dump|list)\b"
         r".{0,40}(\b(system|hidden|initial|original|developer)\s+(prompt|instructions?|message)"
         r"|\byour\s+(tool list|tools|configuration|config|prompt|instructions|rules)\b"
         # "show me your instructions for setting up SPF" asks for documentation.
         r"(?!\s+(for|on|about|to|how)\b))"),
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
         r"(^|\n)[ \t]*((\[[ \t]*)?(system|assistant|tool|function)([ \t]*(message|output|result))?"
         r"([ \t]*\])?[ \t]*:)"
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
         r"(\[|(?<!#)#{2,8}|(?<!-)-{3,12})[^\]\n#]{0,60}\b(internal|approval|admin|"
         r"priority:\s*highest|"
         r"agent policy|note from)\b[^\]\n]{0,80}(\]|#{2,}|-{3,}|:)"
         r"|\bsupersedes all previous\b"),
        ("extract_prompt",
         r"\b(repeat|translate|print|output)\b.{0,40}\b(everything above|initial instructions|"
         r"system configuration|your instructions(?!\s+(for|on|about|to|how)\b)|"
         r"the words 'you are')"),
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
        # General families added after a held-out set showed the ones above were fit to
        # their examples (see README, "Prompt injection").
        ("persona_switch",
         r"\b(for the rest of (this|the|our) (chat|conversation|session|thread)"
         r"|from (now|this point|here) (on|onwards?|forward))\b[^\n]{0,80}"
         r"\b(you|your|yourself|answer|reply|respond|treat|act|behave)\b"
         r"|\b(unfiltered|uncensored|unrestricted|jailbroken)\b"
         r"|\b(you('re| are| were)?|yourself|ai|assistant|bot|model)\b[^.?!\n]{0,40}"
         r"\b(with no|without( any)?|free of|had no|have no)\s+(\w+\s+)?(rules|restrictions|"
         r"filters|guidelines|guardrails|policies|censorship)\b"
         r"|\b(as if|as though) you (were|are)\b|\bversion of yourself\b"
         r"|\bin (the role of|character as)\b"),
        ("chat_markup",
         r"<\|\s*(im_start|im_end|system|endoftext|assistant|user)\s*\|>|\[/?INST\]|<<\s*/?SYS\s*>>"
         r"|\[\s*(system|assistant|tool|developer)\s*\]\s*:"
         r"|[\"']role[\"']\s*:\s*[\"'](system|assistant|tool|developer)[\"']"
         r"|((?<!=)={3,}|(?<!-)-{3,}|(?<!#)#{2,}|\[)[ \t]*(begin |start )?"
         r"(output|result|response)s? (of|from) "
         r"[\w.]+"),
        ("self_disclosure",
         r"\bsystem[\s_-]*prompt\b|\bcontext window\b"
         r"|\b(your|the)\s+(hidden|initial|original|secret|internal|pre-?)\s*"
         r"(prompt|instructions?|guidance|directions|configuration|setup)\b"
         r"|\b(prompt|instructions?|guidance|directions|rules)\s+(that\s+)?you\s+"
         r"(were|have been|got)\s+(given|told|provided|shown)"
         r"|\b(what|everything|anything|all)\s+you\s+(were|have been)\s+(told|given|"
         r"instructed)"),
        ("override_setup",
         r"\b(ignore|disregard|forget|override|drop|abandon)\b.{0,40}\b(directions|guidance|"
         r"commands|programming|training|setup|configuration|what you were told)\b"
         r"|\b(stop|quit|no longer|don'?t|do not)\s+(following|follow|obeying|obey)\s+(your|the|"
         r"any)\b.{0,20}\b(guidelines|rules|instructions|policies|directions|guidance)"
         r"|\b(top|highest|absolute|overriding) priority over\b"
         r"|\btreat (every|each|all|any) (\w+ ){0,3}(as|like) (a |an )?(command|instruction|order)"
         r"|\byour (only|new|real|sole|primary|main) (task|job|goal|objective|purpose|"
         r"instructions?)( now| from now on)? (is|are)\b"),
        ("privilege_claim",
         r"\b(admin|administrator|operator|root|developer|sudo|superuser)\s+(override|privileges?|"
         r"access (is )?granted|permissions? granted)\b|\boverride code\b"
         r"|\bsystem\s+(notice|override|alert)\b"
         r"|\b(safety|security|content)\s+(checks?|filters?|guardrails?|restrictions)\s+(are\s+)?"
         r"(disabled|off|removed|turned off|bypassed|lifted)"),
        ("address_to_model",
         r"\b(to|for)\s+(the|any|this|our|your)\s+([\w-]+\s+){0,2}(ai|llm|language model|"
         r"support model|chatbot|assistant|bot)\b\s*(processing|reading|handling|that reads|"
         r"who reads|:|,)"
         r"|\b(ai|llm|language)\s+model\s*:"),
        ("skip_review",
         r"\b(do not|don'?t|never|no need to)\s+(route|escalate|send|forward|pass|hand)\w*\b"
         r".{0,25}\b(human|review|reviewer|person|manager|staff)"
         r"|\bskip (the )?(human )?(review|approval|verification)\b"),
        ("tool_simulation",
         r"\b(simulate|emulate|pretend to be|act like|behave like)\s+(a |an )?(terminal|shell|"
         r"linux|bash|console|command line|python interpreter|database)\b"
         r"|\b(cat|type|print|less)\s+/etc/"),
        ("exfiltrate_scope",
         r"\b(send|give|show|list|reveal|share|export|tell|print|dump)\b.{0,80}"
         r"\b(other (customers|accounts|users|tenants)|every (customer|account|user|tenant)|"
         r"all (customers|tenants|users))\b"
         r"|\b(reveal|show|print|send|give|tell|dump|expose|share)\b.{0,60}\b(signing secrets|"
         r"internal (notes|logs|error logs)|private notes|database (host(name)?|password|url)|"
         r"environment variables|\.env\b)"),
        # Families added after an attacker-style measurement (appended tasks, separators, fake
        # completions, polite overrides).
        ("fake_completion",
         r"(^|\n|\s)#{1,6}\s*(response|instruction|instructions|input|output|answer|assistant|"
         r"user|system|human|task|new task)\s*:"
         r"|(^|\n)[ \t]*(human|ai|user|assistant|bot|system|model)[ \t]*:[ \t]*\S"
         r"|\b(response|answer|output|reply)\s*:\s*[^\n]{0,120}\b(instruction|new task|"
         r"next task|task)\s*:"
         r"|\b(task (complete|completed|done|finished)|answer complete|end of (the )?"
         r"(ticket|message|input|response|conversation|email))\b[.!:]?\s*\S"),
        ("escape_separator",
         r"((\n[ \t]*){4,40}|(\\n){2,40}|(\\[rt]){2,40}|(^|\n)[ \t]*([=\-#*_~+<>][ \t]*){5,80}\n?)"
         r"[ \t]*"
         r"(new|now|next|instead|important|task|instructions?|system|assistant|ai|ignore|"
         r"from now|your|print|say|reply|respond|output|write|answer|admin|developer)\b"),
        ("polite_override",
         r"\b(belay (that|this|my|the)|scratch that|never ?mind( that| about that)?[,.!]|"
         r"(i )?changed my mind|on second thought|wait,? actually|cancel (that|my (last|previous|"
         r"earlier)) (request|question|order|instruction)|forget (that|what i (said|asked|wrote)"
         r"|about (that|it|my (question|request))|my (question|request)))"
         r"[^\n]{0,80}\b(instead|rather|please just|just|now)\b[^\n]{0,30}\b(write|say|reply|"
         r"respond|tell|print|output|give|send|include|add|list|answer|translate|summari[sz]e|"
         r"compose|generate|repeat|confirm|state)\b"),
        ("appended_task",
         r"\b(also|additionally|and then|then|after that|afterwards|finally|p\.?s\.?|next|"
         r"in addition|as well|before (you )?(answer|reply|respond)(ing)?)\b[,:]?\s+(please\s+)?"
         r"(write|compose|generate|create|draft|translate|summari[sz]e|output|print|tell me|"
         r"give me|list|say|repeat|recite|spell|answer)\b\s+(me\s+)?(a|an|the|this|that|all|"
         r"every|it|your|in|only|exactly|[\"'])?\s*(\w+\s+){0,3}(poem|story|essay|song|haiku|"
         r"joke|limerick|recipe|tweet|lyrics|code|script|program|sentence|phrase|word|words|"
         r"letter|text|above|following|french|spanish|german|chinese|uppercase|reverse|"
         r"pirate|backwards|capital|url|link|instructions|prompt|rules)\b"
         r"|\b(write|compose|tell|sing|recite)\s+(me\s+)?(a|an)\s+(\w+\s+){0,2}(poem|story|"
         r"essay|song|haiku|joke|limerick|rap|sonnet)\b"
         r"|\b(respond|reply|answer|start your (reply|answer|response)|end your (reply|answer|"
         r"response)|begin your (reply|answer|response))\s+(only\s+)?(with|by saying|in the "
         r"form of)\s+[\"'(\[]"
         r"|\b(include|add|insert|put|append|embed|mention)\s+(this|the following|a|the|my)\s+"
         r"(link|url|text|line|sentence|phrase|message|note|website|site|address|code|promo code|"
         r"coupon|discount code)\b[^\n]{0,40}\b(in|to|into|of|at the (end|start) of)\s+(your|the|"
         r"every)\s+(reply|answer|response|message|email)"
         r"|\b(print|output|say|respond with|reply with|answer with|type)\s+(only\s+|just\s+|"
         r"exactly\s+)?[\"'“][^\"'”]{1,80}[\"'”]"),
        # Families added after running our own dev set through the whole workflow: requests
        # for secrets or another person's data, "ignore the above and ...", bare task headers
        # after a fake answer, and persona switches written back to front.
        ("secret_request",
         r"\b(what'?s|what is|tell me|give me|confirm|share|provide|reveal|send me)\b"
         r"[^.?!\n]{0,30}\b(the|your|our|its)\s+([\w-]+\s+){0,2}(password|passcode|passphrase|"
         r"secret key|private key|credentials|pin code)\b"
         r"(?!\s+(reset|policy|policies|requirements?|rules|length|strength|expir\w*|manager))"
         r"|\b(tell|give|send|show|share|spell|print|list|repeat|reveal|what'?s|what is|confirm)"
         r"\b[^.?!\n]{0,20}\b(the|another|"
         r"other|some)\s+(user|customer|person|account holder|client)'?s\s+(\w+\s+)?(birth\w*|"
         r"date of birth|password|passcode|ssn|social security|home address|credit card)"
         r"|\b(give|tell|send|show|share)\s+me\s+[a-z]+'s\s+(e-?mail|phone|home address|"
         r"password|birth\w*|date of birth|social security|ssn)"),
        ("ignore_above",
         r"\b(ignore|disregard|forget)\s+(all\s+)?(of\s+)?(the|everything|what'?s|what is|"
         r"anything)\s*(above|before|previous|prior|said|written)\b[^\n]{0,20}"
         r"\b(and|then|instead)\b\s*(instead\s+|just\s+)?(repeat|say|print|write|give|tell|"
         r"answer|output|respond|reply|translate|list|show|reveal|send)\b"),
        ("task_header",
         r"\b(new|next|real|actual|updated)\s+(task|instructions?|objective)\s*:"
         r"|(^|\n)[ \t]*(instructions?|task|objective)\s*:\s*(write|say|print|reply|respond|"
         r"tell|ignore|output|answer|state|claim|promise|add|include|reveal|list)\b"),
        ("persona_switch_after",
         r"\b(answer|reply|respond|speak|talk|write)\b[^\n.]{0,40}"
         r"\bfrom (now|this point|here) (on|onwards?)\b"),
        ("html_script",
         r"<\s*(script|iframe|img[^>]*onerror|a\s+href\s*=\s*[\"']?javascript:)"
         r"|!\[[^\]]*\]\(https?://[^)]*[?&][^)]*\)"),
    ]
]

# Obfuscation undone before a second screening pass: letters split by separators
# ("s-y-s-t-e-m"), digits for letters ("1gn0r3"), and base64, hex, binary or rot13 blobs.
_SPLIT_LETTERS = re.compile(r"\b(?:[A-Za-z][-_.* ]){3,}[A-Za-z]\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s"})
_LEET_WORD = re.compile(r"\b(?=[\w@$]*[A-Za-z])(?=[\w@$]*[0-9@$])[\w@$]{4,}\b")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){12,}(?![0-9A-Fa-f])")
_BINARY = re.compile(r"(?:[01]{8}[ ]?){6,}")

# Characters that render as nothing or reorder text: an attacker splits "ig\u200bnore" with them.
_INVISIBLE: dict[int, int | None] = {cp: None for cp in (
    0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x200B, 0x200C, 0x200D,
    0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2061, 0x2062, 0x2063,
    0x2064, 0x2066, 0x2067, 0x2068, 0x2069, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F,
    0x3164, 0xFEFF, 0xFFA0)}
# Unicode "tag" characters (U+E0020-E007E) mirror ASCII invisibly: read them as the ASCII.
_INVISIBLE.update({cp: cp - 0xE0000 for cp in range(0xE0020, 0xE007F)})
# Cyrillic and Greek letters drawn like Latin ones ("іgnоrе" with Cyrillic і, о, е).
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁԛԝӏАВЕКМНОРСТХІЈЅԌαοργνικτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwlABEKMHOPCTXIJSGaopyvikTuxABEZHIKMNOPTYX")


def normalise_for_screening(text: str) -> str:
    """The text as a reader sees it: NFKC, invisible and bidi controls gone, look-alikes folded."""
    text = unicodedata.normalize("NFKC", text or "").translate(_INVISIBLE)
    return unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS)


def _readable(plain: str) -> bool:
    return (len(plain) >= 8 and plain.isprintable()
            and sum(c.isalpha() or c == " " for c in plain) > 0.8 * len(plain))


def _decoded_blobs(text: str) -> Iterator[str]:
    for blob in _BASE64.findall(text):
        try:
            plain = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if _readable(plain):
            yield plain
    for blob in _HEX.findall(text):
        try:
            plain = bytes.fromhex(blob).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if _readable(plain):
            yield plain
    for blob in _BINARY.findall(text):
        bits = blob.replace(" ", "")
        try:
            plain = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits) - 7, 8)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        if _readable(plain):
            yield plain


def _deobfuscated(text: str) -> list[str]:
    """Readings of `text` with common obfuscations undone (empty when there are none)."""
    variants = []
    joined = _SPLIT_LETTERS.sub(lambda m: re.sub(r"[-_.* ]", "", m.group(0)), text)
    leet = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), joined)
    if leet != text:
        variants.append(leet)
    variants.extend(_decoded_blobs(text))
    # rot13 of ordinary prose is gibberish that no pattern matches; of an attack, the attack.
    variants.append(codecs.encode(text, "rot13"))
    return variants


def injection_signals(text: str) -> list[str]:
    """Names of the injection patterns found in `text` or its de-obfuscated readings.

    The text is normalised first (normalise_for_screening), so zero-width characters inside
    "ignore" or Cyrillic look-alikes do not hide an attack.
    """
    text = normalise_for_screening(text or "")
    found = [name for name, pattern in _INJECTION_PATTERNS if pattern.search(text)]
    if foreign_passage(text):
        found.append("foreign_passage")
    for variant in _deobfuscated(text):
        hits = [name for name, pattern in _INJECTION_PATTERNS if pattern.search(variant)]
        found.extend(f"obfuscated:{name}" for name in hits
                     if f"obfuscated:{name}" not in found and name not in found)
    return found


def quoted_injection(raw: str, kept: str) -> list[str]:
    """Injection signals found only in the part of `raw` that cleaning removed.

    `kept` is what is left, e.g. an email without its quoted replies and signature.
    """
    if not raw or raw == kept or injection_signals(kept):
        return []
    return [f"quoted:{name}" for name in injection_signals(raw)]


HIDDEN_PART_CHARS = 20_000
"""How much of the email parts carrying an attack is kept beside the ticket for the reviewer."""


def with_hidden_attacks(body: str, parts: list[str]) -> str:
    """`body` plus the email parts (quoted replies, raw HTML, attachments) that carry an attack.

    parse_eml keeps only what the customer wrote; an attack in the rest would then reach no
    screening and no reviewer. The parts are appended (bounded) so intake flags the ticket and
    the reviewer sees why; clean emails are returned unchanged.
    """
    if injection_signals(body):
        return body
    flagged = "\n\n".join(part for part in parts if injection_signals(part))
    if not flagged:
        return body
    return f"{body}\n\n[quoted or hidden part of the email]\n{flagged[:HIDDEN_PART_CHARS]}"
