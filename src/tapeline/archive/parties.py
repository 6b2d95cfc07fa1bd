"""Identifiers of people: E.164 numbers (via `phonenumbers`), WhatsApp BSUIDs, SIP URIs.

An identifier is stored as `kind:value` (`e164:+442071234567`, `bsuid:US.13491208655302741918`,
`sip:alice@example.com`) so one column can hold every kind and a filter can match any of them.
"""

from __future__ import annotations

import phonenumbers

_MAX_DIGITS = 15


def normalise_number(text: str, region: str) -> str | None:
    """An E.164 string for a dialled or signalled number, or None if it is not a phone number."""
    cleaned = text.strip()
    if cleaned.lower().startswith(("tel:", "sip:", "sips:")):
        cleaned = cleaned.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    digits = "".join(ch for ch in cleaned if ch.isdigit())
    if not digits or len(digits) > _MAX_DIGITS:
        return None
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        parsed = phonenumbers.parse(cleaned, None if cleaned.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def identifier_for(text: str, region: str) -> str:
    """The stored identifier for a party given as a number, a SIP URI or a BSUID."""
    # An identifier already in stored form maps to itself (`raw:` too, so "raw:anonymous" does
    # not become "raw:raw:anonymous" when a stored identifier is filed again).
    if text.startswith(("e164:", "bsuid:", "sip:", "wa:", "raw:")) and not text.startswith("sip:+"):
        number = normalise_number(text, region) if text.startswith("sip:") else None
        return f"e164:{number}" if number else text
    number = normalise_number(text, region)
    if number:
        return f"e164:{number}"
    return f"sip:{text}" if "@" in text else f"raw:{text}"


def display(identifier: str) -> str:
    """The human form of a stored identifier (`+4420...`, a BSUID, a URI)."""
    kind, _, value = identifier.partition(":")
    return value if kind in {"e164", "bsuid", "raw"} else identifier
