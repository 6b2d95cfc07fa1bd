"""SDP parser, serializer and SRS answer: RFC 7866 Figures 5 and 6, siprec.md §4, §15, §16."""

import base64
import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import SdpParseError
from tapeline.proto.sdp import (
    Attribute,
    Connection,
    Direction,
    Field,
    MediaDescription,
    Origin,
    SessionDescription,
    build_answer,
    parse_crypto,
    parse_sdp,
    serialize_sdp,
)

# siprec.md §14 V1: RFC 7866 §7.1.1 Figure 5 (RFC text, `<allOneLine>` markers kept).
V1_OFFER = """v=0
o=SRC 2890844526 2890844526 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
m=audio 12240 RTP/AVP 0 4 8
a=sendonly
a=label:1
m=video 22456 RTP/AVP 98
a=rtpmap:98 H264/90000
<allOneLine>
a=fmtp:98 profile-level-id=42A01E;
          sprop-parameter-sets=Z0IACpZTBYmI,aMljiA==
</allOneLine>
a=sendonly
a=label:2
m=audio 12242 RTP/AVP 0 4 8
a=sendonly
a=label:3
m=video 22458 RTP/AVP 98
a=rtpmap:98 H264/90000
<allOneLine>
a=fmtp:98 profile-level-id=42A01E;
          sprop-parameter-sets=Z0IACpZTBYmI,aMljiA==
</allOneLine>
a=sendonly
a=label:4
"""

# siprec.md §14 V2: RFC 7866 §7.2 Figure 6.
V2_ANSWER = """v=0
o=SRS 0 0 IN IP4 198.51.100.20
s=-
c=IN IP4 198.51.100.20
t=0 0
m=audio 10000 RTP/AVP 0
a=recvonly
a=label:1
m=video 10002 RTP/AVP 98
a=rtpmap:98 H264/90000
<allOneLine>
a=fmtp:98 profile-level-id=42A01E;
          sprop-parameter-sets=Z0IACpZTBYmI,aMljiA==
</allOneLine>
a=recvonly
a=label:2
m=audio 10004 RTP/AVP 0
a=recvonly
a=label:3
m=video 10006 RTP/AVP 98
a=rtpmap:98 H264/90000
<allOneLine>
a=fmtp:98 profile-level-id=42A01E;
          sprop-parameter-sets=Z0IACpZTBYmI,aMljiA==
</allOneLine>
a=recvonly
a=label:4
"""

# siprec.md §14 V8: the SDP part of RFC 8068 §3.2.1 (`...` lines are elided RFC text).
V8_SDP = """...
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:96
a=sendonly
...
m=video 49174 RTP/AVPF 96
a=rtpmap:96 H.264/90000
a=label:97
a=sendonly
...
m=audio 51372 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:98
a=sendonly
...
m=video 49176 RTP/AVPF 96
a=rtpmap:96 H.264/90000
a=label:99
a=sendonly
....
"""

KEY = bytes(range(30))


def unfold(text: str) -> str:
    """Undo the RFC `<allOneLine>` documentation markers and drop elided `...` lines."""

    def join(match: re.Match[str]) -> str:
        return "".join(line.strip() for line in match.group(1).splitlines())

    text = re.sub(r"<allOneLine>\n(.*?)\n</allOneLine>", join, text, flags=re.DOTALL)
    return "\n".join(line for line in text.splitlines() if not line.startswith("..."))


def offer(body: str) -> SessionDescription:
    return parse_sdp(body.replace("\n", "\r\n"))


def test_v1_offer_parses_four_labelled_sendonly_streams() -> None:
    sdp = parse_sdp(unfold(V1_OFFER))
    assert [m.label for m in sdp.media] == ["1", "2", "3", "4"]
    assert [m.media for m in sdp.media] == ["audio", "video", "audio", "video"]
    assert all(m.direction is Direction.SENDONLY for m in sdp.media)
    assert (
        sdp.media[1].fmtp(98)
        == "profile-level-id=42A01E;sprop-parameter-sets=Z0IACpZTBYmI,aMljiA=="
    )
    assert sdp.origin == Origin(
        username="SRC",
        session_id="2890844526",
        session_version="2890844526",
        net_type="IN",
        addr_type="IP4",
        address="198.51.100.1",
    )
    assert [r.name for r in sdp.media[0].rtpmaps.values()] == ["PCMU", "G723", "PCMA"]


def test_v1_answer_rejects_video_keeps_order_and_echoes_labels() -> None:
    sdp = parse_sdp(unfold(V1_OFFER))
    answer = build_answer(
        sdp,
        address="198.51.100.20",
        ports=[10000, 10002, 10004, 10006],
        session_id=7,
        session_version=1,
    )
    assert [(m.media, m.port) for m in answer.media] == [
        ("audio", 10000),
        ("video", 0),
        ("audio", 10004),
        ("video", 0),
    ]
    assert answer.media[0].formats == ("0",)
    assert answer.media[0].direction is Direction.RECVONLY
    assert answer.media[2].label == "3"
    assert answer.media[1].formats == ("98",)
    assert answer.connection == Connection(net_type="IN", addr_type="IP4", address="198.51.100.20")
    assert answer.timing == ("0 0",)
    assert answer.origin is not None
    assert answer.origin.username == "Tapeline"


def test_v2_answer_parses_as_recvonly_with_labels() -> None:
    sdp = parse_sdp(unfold(V2_ANSWER))
    assert [m.direction for m in sdp.media] == [Direction.RECVONLY] * 4
    assert [m.label for m in sdp.media] == ["1", "2", "3", "4"]


def test_v8_fragment_without_session_lines_parses() -> None:
    sdp = parse_sdp(unfold(V8_SDP))
    assert sdp.version is None
    assert sdp.origin is None
    assert [m.label for m in sdp.media] == ["96", "97", "98", "99"]
    assert sdp.media[1].proto == "RTP/AVPF"
    answer = build_answer(
        sdp, address="192.0.2.9", ports=[1, 2, 3, 4], session_id=1, session_version=1
    )
    assert [m.port for m in answer.media] == [1, 0, 3, 0]


CISCO = """v=0
o=CiscoSystemsSIP-GW-UserAgent 1247 9367 IN IP4 172.31.93.236
s=SIP Call
c=IN IP4 172.31.93.236
t=0 0
m=audio 10292 RTP/AVP 0 19 101
c=IN IP4 172.31.93.236
a=rtpmap:0 PCMU/8000
a=rtpmap:19 CN/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendonly
a=label:1
"""


def test_answer_keeps_telephone_event_and_cisco_cn_19() -> None:
    answer = build_answer(
        offer(CISCO), address="198.51.100.20", ports=[40000], session_id=1, session_version=3
    )
    text = serialize_sdp(answer)
    assert "m=audio 40000 RTP/AVP 0 19 101\r\n" in text
    assert "a=rtpmap:19 CN/8000\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text
    assert "a=rtcp:40001\r\n" in text
    assert "o=Tapeline 1 3 IN IP4 198.51.100.20\r\n" in text
    assert text.endswith("a=rtcp:40001\r\n")


def test_answer_prefers_the_src_first_decodable_codec() -> None:
    body = (
        "v=0\nm=audio 5 RTP/AVP 96 97 18 0 8\na=rtpmap:96 EVS/16000\n"
        "a=rtpmap:97 AMR-WB/16000\na=fmtp:97 octet-align=1\n"
    )
    answer = build_answer(offer(body), address="::1", ports=[6000], session_id=1, session_version=1)
    assert answer.media[0].formats == ("97",)
    assert answer.media[0].fmtp(97) == "octet-align=1"
    assert answer.origin is not None
    assert answer.origin.addr_type == "IP6"


def test_evs_only_line_rejected_with_port_zero() -> None:
    body = "v=0\nm=audio 5 RTP/AVP 96\na=rtpmap:96 EVS/16000\na=label:a_leg\n"
    answer = build_answer(
        offer(body), address="192.0.2.1", ports=[6000], session_id=1, session_version=1
    )
    assert answer.media[0].port == 0
    assert answer.media[0].formats == ("96",)


@pytest.mark.parametrize(
    ("direction_line", "expected"),
    [
        ("a=sendonly\n", Direction.RECVONLY),
        ("a=inactive\n", Direction.INACTIVE),
        ("", Direction.RECVONLY),  # Metaswitch/BroadWorks send no direction
        ("a=SendRecv\n", Direction.RECVONLY),
        ("a=direction:both\n", Direction.RECVONLY),  # SEMS
    ],
)
def test_answer_direction_follows_the_offer(direction_line: str, expected: Direction) -> None:
    body = f"v=0\nc=IN IP4 192.0.2.1\nm=audio 5 RTP/AVP 8\n{direction_line}a=label:16777227\n"
    answer = build_answer(
        offer(body), address="192.0.2.2", ports=[40000], session_id=1, session_version=1
    )
    assert answer.media[0].direction is expected
    assert answer.media[0].label == "16777227"


def test_not_ready_answers_inactive() -> None:
    answer = build_answer(
        offer(CISCO), address="192.0.2.2", ports=[1], session_id=1, session_version=1, ready=False
    )
    assert answer.media[0].direction is Direction.INACTIVE


def test_rtcp_mux_is_answered_only_when_offered() -> None:
    body = "v=0\nm=audio 5 RTP/AVP 0\na=rtcp-mux\n"
    answer = build_answer(
        offer(body), address="192.0.2.2", ports=[40000], session_id=1, session_version=1
    )
    assert answer.media[0].has("rtcp-mux")
    assert answer.media[0].rtcp is None


def test_ports_must_match_the_offer() -> None:
    with pytest.raises(ValueError, match="one port per offered m-line"):
        build_answer(offer(CISCO), address="192.0.2.2", ports=[], session_id=1, session_version=1)


SAVP = """v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 5000 RTP/SAVP 9 101
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
a=crypto:1 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:9sOd+W72ilwfNgNt0FzlGYj6YZPMqN1sJJx43UuS|2^20|1:4
a=sendonly
a=label:1
"""


def test_savp_offer_gets_savp_answer_with_our_key() -> None:
    sdp = offer(SAVP)
    crypto = sdp.media[0].crypto
    assert [c.suite for c in crypto] == ["AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"]
    assert crypto[1].keys[0].key_salt == base64.b64decode(
        "9sOd+W72ilwfNgNt0FzlGYj6YZPMqN1sJJx43UuS"
    )
    assert crypto[1].keys[0].lifetime == "2^20"
    assert crypto[1].keys[0].mki == "1:4"
    answer = build_answer(
        sdp, address="192.0.2.2", ports=[40000], session_id=1, session_version=1, srtp_keys={0: KEY}
    )
    media = answer.media[0]
    assert media.proto == "RTP/SAVP"
    assert media.values("crypto") == (
        "2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode(),
    )
    assert media.rtpmaps[9].audio_rate == 16000
    assert media.rtpmaps[9].clock_rate == 8000


def test_savp_without_our_key_is_rejected_never_answered_plain() -> None:
    answer = build_answer(
        offer(SAVP), address="192.0.2.2", ports=[40000], session_id=1, session_version=1
    )
    assert answer.media[0].port == 0
    assert answer.media[0].proto == "RTP/SAVP"


def test_malformed_crypto_is_skipped() -> None:
    assert parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:***") is None
    assert parse_crypto("x") is None
    assert parse_crypto("1 AES_CM_128_HMAC_SHA1_80 srtp:abc") is None


def test_hold_address_and_inactive_are_paused() -> None:
    sdp = offer(
        "v=0\no=- 1 2 IN IP4 0.0.0.0\nc=IN IP4 0.0.0.0\nt=0 0\n"
        "m=audio 5 RTP/AVP 18 0 8\nm=audio 0 RTP/AVP 0\n"
    )
    assert sdp.is_paused(0)
    assert sdp.is_paused(1)
    live = offer(
        "v=0\nm=audio 5 RTP/AVP 0\nc=IN IP4 192.0.2.1\na=inactive\n"
        "m=audio 7 RTP/AVP 0\nc=IN IP4 192.0.2.1\n"
    )
    assert live.is_paused(0)
    assert not live.is_paused(1)


def test_tolerates_lowercase_codecs_unknown_attributes_and_missing_lines() -> None:
    sdp = offer(
        "m=audio 5 RTP/AVP 0 101\na=rtpmap:0 pcmu/8000\na=rtpmap:101 telephone-event/48000\n"
        "a=3gOoBTC\na=maxptime:20\n"
    )
    media = sdp.media[0]
    assert media.rtpmaps[0].name == "PCMU"
    assert media.has("3gOoBTC")
    assert media.ptime == 20
    assert sdp.connection_for(0) is None
    assert sdp.direction_for(0) is Direction.SENDRECV


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("v=0\nm=audio x RTP/AVP 0\n", "m= line has an invalid port"),
        ("v=0\nm=audio 5/x RTP/AVP 0\n", "m= line has an invalid port count"),
        ("v=0\nm=audio 5\n", "m= line must have media, port and proto"),
        ("v=0\no=a b\n", "o= line must have 6 fields"),
        ("v=0\nc=IN IP4\n", "c= line must have 3 fields"),
        ("v=0\nc=IN IP4 a\nc=IN IP4 b\n", "repeated session-level c= line"),
        ("v=0\nhello\n", "SDP line is not <type>=<value>"),
        ("v=x\n", "invalid or repeated v= line"),
        ("v=0\na=:x\n", "a= line has an invalid attribute name"),
        ("v=0\n" + "a=x\n" * 20000, "SDP body exceeds 65536 bytes"),
    ],
)
def test_malformed_sdp_raises_exact_message(body: str, message: str) -> None:
    with pytest.raises(SdpParseError) as info:
        parse_sdp(body)
    assert str(info.value) == message


def test_invalid_utf8_raises() -> None:
    with pytest.raises(SdpParseError, match="not UTF-8"):
        parse_sdp(b"v=0\xff\n")


@pytest.mark.parametrize("body", [unfold(V1_OFFER), unfold(V2_ANSWER), CISCO, SAVP, unfold(V8_SDP)])
def test_fixtures_round_trip(body: str) -> None:
    sdp = parse_sdp(body)
    assert parse_sdp(serialize_sdp(sdp)) == sdp
    assert parse_sdp(serialize_sdp(sdp).encode()) == sdp


@settings(deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_a_value_or_sdp_parse_error(data: bytes) -> None:
    with contextlib.suppress(SdpParseError):
        sdp = parse_sdp(data)
        assert parse_sdp(serialize_sdp(sdp)) == sdp


@settings(deadline=None)
@given(st.text(alphabet="vocsmat=0123456789 :/\r\n-aIPNRTAV", max_size=400))
def test_sdp_like_text_gives_a_value_or_sdp_parse_error(text: str) -> None:
    with contextlib.suppress(SdpParseError):
        sdp = parse_sdp(text)
        assert parse_sdp(serialize_sdp(sdp)) == sdp


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_.+/", min_size=1, max_size=12)
_value = (
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -_.+/:;=", min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
_attribute = st.builds(Attribute, name=_token, value=st.none() | _value)
_connection = st.builds(Connection, net_type=_token, addr_type=_token, address=_token)
_media = st.builds(
    MediaDescription,
    media=_token,
    port=st.integers(0, 65535),
    port_count=st.none() | st.integers(1, 9),
    proto=_token,
    formats=st.lists(_token, max_size=4).map(tuple),
    connections=st.lists(_connection, max_size=2).map(tuple),
    fields=st.lists(st.builds(Field, type=st.sampled_from("ibk"), value=_value), max_size=2).map(
        tuple
    ),
    attributes=st.lists(_attribute, max_size=5).map(tuple),
)
_session = st.builds(
    SessionDescription,
    version=st.none() | st.integers(0, 9),
    origin=st.none()
    | st.builds(
        Origin,
        username=_token,
        session_id=_token,
        session_version=_token,
        net_type=_token,
        addr_type=_token,
        address=_token,
    ),
    session_name=st.none() | _value,
    connection=st.none() | _connection,
    timing=st.lists(_value, max_size=2).map(tuple),
    fields=st.lists(
        st.builds(Field, type=st.sampled_from("iuepbzk"), value=_value), max_size=3
    ).map(tuple),
    attributes=st.lists(_attribute, max_size=4).map(tuple),
    media=st.lists(_media, max_size=4).map(tuple),
)


@settings(deadline=None)
@given(_session)
def test_serialize_then_parse_is_identity(sdp: SessionDescription) -> None:
    assert parse_sdp(serialize_sdp(sdp)) == sdp
