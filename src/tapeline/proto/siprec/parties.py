"""Party identities from SIP URIs and headers: RFC 3261 §19.1 and §25, RFC 3966 tel URIs.

Used for rs-metadata AoRs (RFC 7865 §6.5) and for a plain carrier fork INVITE's headers
(From, To, RFC 3325 P-Asserted-Identity, RFC 5502 P-Served-User, RFC 5806 Diversion, RFC 7044
History-Info). Only stripping happens here (siprec.md §11.3 steps 1 to 3): the user part, URI
parameters and visual separators go; `+` stays. National prefixes and E.164 validation need
libphonenumber and are done outside `proto/` on `PartyIdentity.number`.
"""

import re
from dataclasses import dataclass

WITHHELD = frozenset({"anonymous", "anonymous.invalid", "restricted", "unavailable", "unknown"})
_SEPARATORS = re.compile(r"[-.() ]")
_NUMBER = re.compile(r"^\+?[0-9]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyIdentity:
    """One identity: the raw header value or AoR, its URI, user part and stripped number."""

    raw: str
    uri: str
    user: str
    number: str | None = None  # digits with an optional leading +, after stripping
    display_name: str | None = None
    withheld: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkParties:
    """The parties of a plain fork INVITE (siprec.md §11.2), None where a header was absent."""

    calling: PartyIdentity | None = None  # P-Asserted-Identity (tel: preferred), else From
    called: PartyIdentity | None = None  # To
    served_user: PartyIdentity | None = None  # P-Served-User: the subscriber an IMS AS serves
    original_called: PartyIdentity | None = None  # oldest Diversion / first History-Info entry
    asserted: tuple[PartyIdentity, ...] = ()


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and `<...>`."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _name_addr(value: str) -> tuple[str | None, str]:
    text = value.strip()
    if "<" in text and ">" in text.partition("<")[2]:
        display, _, rest = text.partition("<")
        uri = rest.partition(">")[0]
        name = display.strip().strip('"').strip() or None
        return name, uri.strip()
    # addr-spec form: parameters after the URI belong to the header (RFC 3261 §20.10)
    # (tel: parameters such as phone-context stay: user_part reads them).
    return None, text.split(";", 1)[0].strip() if text.lower().startswith("sip") else text


def user_part(uri: str) -> str:
    """Return the user part of a sip:, sips:, tel: or scheme-less URI (siprec.md §11.3 step 1).

    `tel:` keeps the number before `;` and applies a `phone-context=+CC` prefix; `sip:`/`sips:`
    keep the user before `@` (the host when there is no user, as BroadWorks `sip:8638254725`);
    user parameters such as `;npdi` are dropped.
    """
    text = uri.strip()
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() == "tel":
        number, *params = rest.split(";")
        for param in params:
            name, _, val = param.partition("=")
            if name.strip().lower() == "phone-context" and val.startswith("+"):
                number = _SEPARATORS.sub("", val) + number
        return number.strip()
    if not (sep and scheme.lower() in {"sip", "sips"}):
        rest = text
    user = rest.rpartition("@")[0] if "@" in rest else rest
    return user.split(";", 1)[0].split("?", 1)[0].split(":", 1)[0].strip()


def identity(value: str) -> PartyIdentity:
    """Read one name-addr, addr-spec or bare AoR into a PartyIdentity.

    Args:
        value: A header value (`"Bob" <sip:+4477...@host;user=phone>;tag=x`) or an AoR.

    Returns:
        The identity; `number` is None for non-numeric users and withheld identities.
    """
    display, uri = _name_addr(value)
    user = user_part(uri)
    stripped = _SEPARATORS.sub("", user)
    host = uri.rpartition("@")[2].split(";", 1)[0].lower() if "@" in uri else ""
    withheld = user.lower() in WITHHELD or host == "anonymous.invalid"
    number = stripped if _NUMBER.match(stripped) and not withheld else None
    return PartyIdentity(
        raw=value, uri=uri, user=user, number=number, display_name=display, withheld=withheld
    )


def aor_number(aor: str) -> str | None:
    """Return the stripped number of an AoR, or None (the default normaliser of `map_channels`)."""
    return identity(aor).number


def _first(values: list[str]) -> PartyIdentity | None:
    return identity(values[0]) if values else None


def parse_fork_parties(  # noqa: PLR0913  # one argument per header, all keyword-only
    *,
    from_header: str | None = None,
    to_header: str | None = None,
    p_asserted_identity: tuple[str, ...] = (),
    p_served_user: str | None = None,
    diversion: tuple[str, ...] = (),
    history_info: tuple[str, ...] = (),
) -> ForkParties:
    """Find the parties of a plain fork INVITE from its header values.

    Args:
        from_header: The From value.
        to_header: The To value.
        p_asserted_identity: Every P-Asserted-Identity value (RFC 3325 allows a sip and a tel).
        p_served_user: The P-Served-User value (RFC 5502).
        diversion: Every Diversion value, newest first as received (RFC 5806).
        history_info: Every History-Info value, in order (RFC 7044).

    Returns:
        The parties; the caller normalises `number` and matches provisioned lines.
    """
    asserted = tuple(identity(v) for h in p_asserted_identity for v in split_header_values(h))
    tel = next((a for a in asserted if a.uri.lower().startswith("tel:")), None)
    calling = tel or (asserted[0] if asserted else None)
    if calling is None and from_header is not None:
        calling = identity(from_header)
    diverted = [v for h in diversion for v in split_header_values(h)]
    history = [v for h in history_info for v in split_header_values(h)]
    original = _first(diverted[-1:]) or _first(history)
    return ForkParties(
        calling=calling,
        called=identity(to_header) if to_header is not None else None,
        served_user=identity(p_served_user) if p_served_user is not None else None,
        original_called=original,
        asserted=asserted,
    )
