import pytest

from tapeline.proto.errors import SipParseError
from tapeline.proto.sip.headers import (
    COMPACT_FORMS,
    Headers,
    canonical_name,
    param,
    parse_content_type,
    parse_cseq,
    parse_header_lines,
    parse_name_addr,
    parse_params,
    parse_via,
    split_unquoted,
)


def test_lookup_is_case_insensitive_and_expands_every_compact_form() -> None:
    for short, long in COMPACT_FORMS.items():
        headers = parse_header_lines([f"{short}: one", f"{long.upper()}: two"])
        assert headers.get_all(long.lower()) == ("one", "two")
        assert headers.get(short.upper()) == "one"
        assert canonical_name(short) == long.lower()


def test_repeats_order_and_spelling_are_kept() -> None:
    headers = parse_header_lines(["Via: a", "X-Foo: 1", "v: b", "via: c"])
    assert headers.fields == (("Via", "a"), ("X-Foo", "1"), ("v", "b"), ("via", "c"))
    assert headers.get_all("Via") == ("a", "b", "c")
    assert len(headers) == 4
    assert list(headers)[1] == ("X-Foo", "1")
    assert "x-foo" in headers
    assert "Missing" not in headers
    assert 3 not in headers
    assert headers.get("Missing") is None


def test_folded_lines_are_unfolded_with_one_space() -> None:
    headers = parse_header_lines(["Subject: I know you're there,", "   pick up the phone", "\tnow"])
    assert headers.get("s") == "I know you're there, pick up the phone now"


def test_continuation_without_header_is_rejected() -> None:
    with pytest.raises(SipParseError, match=r"^Header continuation line without a header$") as info:
        parse_header_lines([" orphan"])
    assert info.value.status_hint == 400


def test_line_without_colon_is_rejected() -> None:
    with pytest.raises(SipParseError, match=r"^Malformed header line$"):
        parse_header_lines(["NoColonHere"])


def test_whitespace_before_colon_and_empty_value_are_accepted() -> None:
    headers = parse_header_lines(["Subject   :   ", "X-A\t: b \t"])
    assert headers.fields == (("Subject", ""), ("X-A", "b"))


def test_get_list_splits_commas_outside_quotes_and_brackets() -> None:
    headers = Headers(
        fields=(
            ("Contact", '"Doe, John" <sip:a@b;x=1,2>, <sip:c@d>'),
            ("m", "<sip:e@f>"),
            ("Supported", "timer, , 100rel"),
        )
    )
    assert headers.get_list("Contact") == ('"Doe, John" <sip:a@b;x=1,2>', "<sip:c@d>", "<sip:e@f>")
    assert headers.get_list("k") == ("timer", "100rel")


def test_split_unquoted_handles_escapes_and_unbalanced_brackets() -> None:
    assert split_unquoted(r'"a\",b",c', ",") == [r'"a\",b"', "c"]
    assert split_unquoted("a>,b", ",") == ["a>", "b"]


def test_params_flags_quotes_and_case() -> None:
    params = parse_params(';Tag=abc;lr; boundary="a b\\"c";;')
    assert params == (("tag", "abc"), ("lr", None), ("boundary", 'a b"c'))
    assert param(params, "lr") == ""
    assert param(params, "tag") == "abc"
    assert param(params, "nope") is None


def test_empty_param_name_is_rejected() -> None:
    with pytest.raises(SipParseError, match=r"^Empty header parameter name$"):
        parse_params(";=x")


def test_via_with_branch_received_and_rport() -> None:
    via = parse_via("SIP/2.0/udp 192.0.2.1:5070;branch=z9hG4bK776;received=10.0.0.1;rport=5071")
    assert via.transport == "UDP"
    assert (via.host, via.port, via.sent_by) == ("192.0.2.1", 5070, "192.0.2.1:5070")
    assert via.branch == "z9hG4bK776"
    assert via.received == "10.0.0.1"
    assert via.rport == 5071
    assert via.wants_rport


def test_via_ipv6_and_rport_flag_and_spaces() -> None:
    via = parse_via("SIP / 2.0 / TLS [2001:db8::1] : 5061 ; rport ; branch=z9hG4bKx")
    assert via.host == "[2001:db8::1]"
    assert via.port == 5061
    assert via.rport is None
    assert via.wants_rport
    bare = parse_via("SIP/2.0/TCP host.example")
    assert (bare.port, bare.branch, bare.sent_by, bare.wants_rport) == (
        None,
        None,
        "host.example",
        False,
    )


@pytest.mark.parametrize(
    "value",
    ["", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP h;rport=x"],
)
def test_malformed_via_is_rejected(value: str) -> None:
    with pytest.raises(SipParseError, match=r"^Malformed Via header$") as info:
        parse_via(value)
    assert info.value.status_hint == 400


def test_cseq() -> None:
    assert parse_cseq(" 4711   INVITE ") == parse_cseq("4711 INVITE")
    assert parse_cseq("2147483647 BYE").number == 2**31 - 1


@pytest.mark.parametrize("value", ["INVITE", "1", "x INVITE", "2147483648 BYE", "1 IN VITE"])
def test_malformed_cseq_is_rejected(value: str) -> None:
    with pytest.raises(SipParseError, match=r"^Malformed CSeq header$"):
        parse_cseq(value)


def test_name_addr_with_quoted_display_name_and_tag() -> None:
    addr = parse_name_addr('"Bob \\"B\\" Smith" <sip:bob@example.com;transport=tcp>;tag=a6c85cf')
    assert addr.display_name == 'Bob "B" Smith'
    assert addr.uri == "sip:bob@example.com;transport=tcp"
    assert addr.tag == "a6c85cf"


def test_name_addr_with_token_display_name_and_srs_feature_tag() -> None:
    addr = parse_name_addr("Extension 8500 <sip:2249888500@10.0.0.1> ;+sip.src")
    assert addr.display_name == "Extension 8500"
    assert addr.tag is None
    assert param(addr.params, "+sip.src") == ""


def test_addr_spec_without_brackets_gives_params_to_header() -> None:
    addr = parse_name_addr("sip:alice@example.com;tag=88sja8x")
    assert addr.display_name is None
    assert addr.uri == "sip:alice@example.com"
    assert addr.tag == "88sja8x"
    assert parse_name_addr("<tel:+15551234567>").uri == "tel:+15551234567"


@pytest.mark.parametrize("value", ["", "  ", "<>", '"unterminated <sip:a@b>', "a b"])
def test_malformed_name_addr_is_rejected(value: str) -> None:
    with pytest.raises(SipParseError, match=r"^Malformed name-addr$"):
        parse_name_addr(value)


@pytest.mark.parametrize(
    "value",
    [
        "multipart/mixed;boundary=foobar",
        "Multipart/Mixed; boundary=foobar",
        'multipart/mixed ; boundary="foobar"',
    ],
)
def test_content_type_boundary_forms(value: str) -> None:
    content_type = parse_content_type(value)
    assert content_type.media_type == "multipart/mixed"
    assert content_type.boundary == "foobar"


def test_content_type_without_params() -> None:
    content_type = parse_content_type("application/SDP")
    assert (content_type.type, content_type.subtype) == ("application", "sdp")
    assert content_type.boundary is None


@pytest.mark.parametrize("value", ["", "application", "application/", "/sdp", "a/b c"])
def test_malformed_content_type_is_rejected(value: str) -> None:
    with pytest.raises(SipParseError, match=r"^Malformed Content-Type header$"):
        parse_content_type(value)


def test_p_asserted_identity_and_diversion_read_as_name_addrs() -> None:
    headers = parse_header_lines(
        [
            'P-Asserted-Identity: "Trader 7" <sip:+442071234567@bank.example>, <tel:+442071234567>',
            "Diversion: <sip:2249888012@10.0.0.1>;reason=unconditional;counter=1",
        ]
    )
    sip_id, tel_id = (parse_name_addr(v) for v in headers.get_list("p-asserted-identity"))
    assert (sip_id.display_name, sip_id.uri) == ("Trader 7", "sip:+442071234567@bank.example")
    assert tel_id.uri == "tel:+442071234567"
    diversion = parse_name_addr(headers.get("diversion") or "")
    assert param(diversion.params, "reason") == "unconditional"
    assert param(diversion.params, "counter") == "1"
