"""A hardened XML reader for rs-metadata bodies (siprec.md §3 item 9, RFC 7865 §10).

Strategy: drive expat directly and build an `xml.etree` tree with `TreeBuilder`, so nothing but
elements, attributes and text reaches the tree. Any DOCTYPE is refused outright, which rules out
internal entity expansion (billion laughs) and external entities (XXE); parameter entities are
never parsed and no external resource is ever fetched. Size and nesting depth are bounded.
Element and attribute names come out in ElementTree's `{namespace}local` form.
"""

import xml.etree.ElementTree as ET  # only TreeBuilder and Element; expat is hardened below
from xml.parsers import expat

from tapeline.proto.errors import SiprecMetadataError

MAX_XML_SIZE = 262_144  # metadata bodies are a few KB; Ribbon maps at most 2,048 bytes of headers
MAX_XML_DEPTH = 32
_BOM = "\ufeff"


class _RefusedError(Exception):
    """Raised from an expat handler; turned into SiprecMetadataError by `parse_xml`."""


def _qualify(name: str) -> str:
    uri, sep, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else name


def _prepare(body: str | bytes) -> bytes:
    if len(body) > MAX_XML_SIZE:
        raise SiprecMetadataError("metadata body exceeds 262144 bytes")
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SiprecMetadataError("metadata body is not encodable as UTF-8") from exc
    # RFC 8068 examples indent `<?xml`; a BOM or leading blanks must go (siprec.md §3 item 7).
    body = body.removeprefix(_BOM.encode("utf-8")).lstrip()
    return body.removeprefix(_BOM.encode("utf-8"))


def parse_xml(body: str | bytes) -> ET.Element:
    """Parse an XML document without DTDs or entities.

    Args:
        body: The document as received (bytes) or decoded (str).

    Returns:
        The root element.

    Raises:
        SiprecMetadataError: The document is too large, too deep, malformed, or has a DOCTYPE.
    """
    data = _prepare(body)
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _RefusedError("metadata nesting exceeds 32 levels")
        builder.start(_qualify(name), {_qualify(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_qualify(name))

    def refuse(*_args: object) -> None:
        raise _RefusedError("metadata must not contain a DOCTYPE or entity declaration")

    def refuse_external(*_args: object) -> int:
        raise _RefusedError("metadata must not reference an external entity")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_external
    try:
        parser.Parse(data, True)  # noqa: FBT003  # expat's positional isfinal flag
        return builder.close()
    except _RefusedError as exc:
        raise SiprecMetadataError(str(exc)) from exc
    except (
        expat.ExpatError,
        AssertionError,
        ValueError,
        LookupError,
    ) as exc:  # LookupError: bad encoding name
        raise SiprecMetadataError(f"metadata is not well-formed XML: {exc}") from exc
