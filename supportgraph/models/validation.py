"""Is a model's output usable? Not when empty, refused, truncated, off-schema or off-language.

A rejected output counts as a failed try of its chain entry, so the chain moves on to the next
entry instead of handing a customer a refusal or broken JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from supportgraph.models.chat import ChatRequest, Completion
from supportgraph.text.language import detect_wrong_language

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- validation

# A refusal opens the reply or one of its first sentences ("Hi! I'm sorry, but I can't ...");
# "I'm sorry to hear that ..." is an apology, not a refusal, and does not match.
_REFUSAL = re.compile(
    r"(?:^|[.!?]\s+)\W*(?:i['’]?m sorry,? but i (?:can(?:no|['’])?t|am unable|won['’]t)"
    r"|i (?:can(?:no|['’])?t|won['’]t|am unable to|am not able to) "
    r"(?:help|assist|comply|provide|answer)(?: you)? with (?:that|this)"
    r"|sorry,? (?:but )?i can(?:no|['’])?t (?:help|assist)"
    r"|as an ai(?: language)? model,? i)",
    re.IGNORECASE,
)

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL | re.IGNORECASE)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_error(value: Any, schema: Mapping[str, Any], path: str = "$") -> str | None:
    """First violation of a small JSON Schema subset, or None when `value` conforms.

    Supports type (name or list), enum, const, object properties/required/additionalProperties,
    array items/minItems/maxItems, string minLength/maxLength, number minimum/maximum: enough
    for the structured answers our nodes request, with no new dependency.
    """
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES.get(name, lambda v: True)(value) for name in names):
            return f"{path}: expected {'/'.join(names)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{path}: must be {schema['const']!r}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{path}: missing {key!r}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                error = schema_error(item, props[key], f"{path}.{key}")
                if error:
                    return error
            elif schema.get("additionalProperties") is False:
                return f"{path}: unexpected {key!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path}: more than {schema['maxItems']} items"
        if isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(value):
                error = schema_error(item, schema["items"], f"{path}[{index}]")
                if error:
                    return error
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: above {schema['maximum']}"
    return None


def validate_output(request: ChatRequest, completion: Completion) -> tuple[str, str | None]:
    """Return (clean text, None) for usable output, or (text, why) when it must be rejected."""
    text = completion.text or ""
    if completion.refusal:
        return text, "refusal"
    if not text.strip():
        return text, "empty"
    if completion.truncated:
        return text, "truncated"
    if _REFUSAL.search(text[:300]):
        return text, "refusal"
    if request.json_schema is not None:
        fenced = _FENCE.match(text)
        clean = (fenced.group(1) if fenced else text).strip()
        try:
            value = json.loads(clean)
        except ValueError:
            return text, "not_json"
        error = schema_error(value, request.json_schema)
        if error:
            log.debug("output does not match the requested schema: %s", error)
            return text, "schema_mismatch"
        return clean, None
    if request.language:
        other = detect_wrong_language(text, request.language)
        if other:
            return text, f"wrong_language_{other}"
    return text.strip(), None


def estimate_input_tokens(request: ChatRequest) -> int:
    """Estimate input tokens generously for budget checks (about 3 characters a token)."""
    schema = len(json.dumps(request.json_schema)) if request.json_schema else 0
    return (len(request.system) + len(request.user) + schema) // 3 + 16

