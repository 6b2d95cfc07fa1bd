"""The SRS's SDP answer: RFC 7866 §7.2 and §8.3.1, RFC 3264 §6, siprec.md §4 answer rules.

Strategy: one answer m-line per offered m-line, same order (RFC 3264 §6). An m-line is accepted
when it is audio over RTP/AVP(F) or RTP/SAVP(F) with a codec we decode; the answer then carries
the SRC's first decodable payload type plus any telephone-event and CN it offered, our port, the
direction `recvonly` (`inactive` for an inactive offer or when not ready), the offered `a=label`
verbatim and, for SRTP, one `a=crypto` with the offered tag and our own key. Anything else is
answered with port 0 and the offered formats, never dropped (RFC 7866 §8.3.1). Keys and ports come
in as arguments: nothing here draws randomness or allocates sockets.
"""

from collections.abc import Mapping, Sequence

from tapeline.proto.sdp.model import (
    Attribute,
    Connection,
    Crypto,
    Direction,
    KeyParams,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    format_crypto,
)

# Audio codecs Tapeline decodes (DESIGN §4), by upper-case encoding name.
SUPPORTED_CODECS = frozenset({"PCMU", "PCMA", "G722", "G729", "OPUS", "AMR", "AMR-WB"})
TELEPHONE_EVENT = "TELEPHONE-EVENT"  # RFC 4733
COMFORT_NOISE = "CN"  # RFC 3389; PT 13, or 19 from Cisco via rtpmap

# SDES suites and their master key||salt lengths in bytes (RFC 4568 §6.2, RFC 7714 §14.2).
SRTP_KEY_LENGTHS: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}
_RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"})


def _rtpmap_value(rtpmap: RtpMap) -> str:
    text = f"{rtpmap.payload_type} {rtpmap.encoding}/{rtpmap.clock_rate}"
    return text if rtpmap.channels in (None, 1) else f"{text}/{rtpmap.channels}"


def choose_payload_types(media: MediaDescription) -> tuple[RtpMap, ...]:
    """Pick the payload types to answer for one offered audio m-line (siprec.md §4 rule 4).

    Args:
        media: The offered m-line.

    Returns:
        The SRC's first decodable codec, then every offered telephone-event and CN, in offer
        order; empty when no offered codec is decodable.
    """
    rtpmaps = media.rtpmaps
    codec = next((m for m in rtpmaps.values() if m.name in SUPPORTED_CODECS), None)
    if codec is None:
        return ()
    extras = (m for m in rtpmaps.values() if m.name in {TELEPHONE_EVENT, COMFORT_NOISE})
    return (codec, *extras)


def _answer_crypto(media: MediaDescription, key: bytes | None) -> Crypto | None:
    if key is None:
        return None
    for offered in media.crypto:
        if SRTP_KEY_LENGTHS.get(offered.suite.upper()) == len(key):
            return Crypto(tag=offered.tag, suite=offered.suite, keys=(KeyParams(key_salt=key),))
    return None


def _rejected(media: MediaDescription) -> MediaDescription:
    formats = media.formats or ("0",)
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=formats)


def _answer_media(  # noqa: PLR0913  # one value per answer rule
    offer: SessionDescription,
    index: int,
    *,
    port: int,
    key: bytes | None,
    ready: bool,
    rtcp: bool,
) -> MediaDescription:
    media = offer.media[index]
    if (
        media.port == 0
        or media.media.lower() != "audio"
        or media.proto.upper() not in _RTP_PROFILES
    ):
        return _rejected(media)
    chosen = choose_payload_types(media)
    crypto = _answer_crypto(media, key) if media.is_secure else None
    if not chosen or (media.is_secure and crypto is None):
        return _rejected(media)
    attrs = [Attribute(name="rtpmap", value=_rtpmap_value(m)) for m in chosen]
    for rtpmap in chosen:
        fmtp = media.fmtp(rtpmap.payload_type)
        if fmtp is not None:
            attrs.append(Attribute(name="fmtp", value=f"{rtpmap.payload_type} {fmtp}"))
    inactive = not ready or offer.direction_for(index) is Direction.INACTIVE
    attrs.append(Attribute(name=(Direction.INACTIVE if inactive else Direction.RECVONLY).value))
    if media.label is not None:
        attrs.append(Attribute(name="label", value=media.label))
    if crypto is not None:
        attrs.append(Attribute(name="crypto", value=format_crypto(crypto)))
    if media.has("rtcp-mux"):
        attrs.append(Attribute(name="rtcp-mux"))
    elif rtcp:
        attrs.append(Attribute(name="rtcp", value=str(port + 1)))
    return MediaDescription(
        media=media.media,
        port=port,
        proto=media.proto,
        formats=tuple(str(m.payload_type) for m in chosen),
        attributes=tuple(attrs),
    )


def build_answer(  # noqa: PLR0913  # the answer's inputs, all keyword-only
    offer: SessionDescription,
    *,
    address: str,
    ports: Sequence[int],
    session_id: int,
    session_version: int,
    srtp_keys: Mapping[int, bytes] | None = None,
    ready: bool = True,
    rtcp: bool = True,
    username: str = "Tapeline",
) -> SessionDescription:
    """Build the SRS answer to a recording-session offer.

    Args:
        offer: The SRC's offer.
        address: Our media address (IPv4 or IPv6), written in `o=` and `c=`.
        ports: Our RTP port for each offered m-line, by index (ignored for rejected lines).
        session_id: Our stable `o=` session id for this RS.
        session_version: Our `o=` version; the caller increments it on every change.
        srtp_keys: m-line index → our SDES master key||salt (30 bytes for AES_CM_128, 28 or 44
            for AES-GCM); an SRTP m-line without a key of a length the offer can use is rejected.
        ready: False answers every accepted m-line `inactive` (RFC 7866 §7.2, Figure 7).
        rtcp: Write `a=rtcp:<port+1>` (RFC 3605) when the offer has no `a=rtcp-mux`.
        username: The `o=` username.

    Returns:
        The answer; all ports 0 means no common codec (answer 488 instead, siprec.md §7).

    Raises:
        ValueError: `ports` does not have one entry per offered m-line.
    """
    if len(ports) != len(offer.media):
        raise ValueError("ports must give one port per offered m-line")
    keys = srtp_keys or {}
    addr_type = "IP6" if ":" in address else "IP4"
    media = tuple(
        _answer_media(offer, i, port=ports[i], key=keys.get(i), ready=ready, rtcp=rtcp)
        for i in range(len(offer.media))
    )
    return SessionDescription(
        version=0,
        origin=Origin(
            username=username,
            session_id=str(session_id),
            session_version=str(session_version),
            net_type="IN",
            addr_type=addr_type,
            address=address,
        ),
        session_name="-",
        connection=Connection(net_type="IN", addr_type=addr_type, address=address),
        timing=("0 0",),
        media=media,
    )
