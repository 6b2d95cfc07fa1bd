"""rs-metadata parsing, partial updates, channel mapping and fork parties.

RFC 7865 §7 and §8, RFC 8068 §3.2 vectors of siprec.md §14; dialect quirks of siprec.md §10 and
§16 as small synthetic bodies shaped like the cited vendor samples.
"""

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tapeline.proto.errors import SiprecMetadataError
from tapeline.proto.siprec import (
    CallDirection,
    ChannelRule,
    DataMode,
    Dialect,
    RecordingMetadata,
    SnapshotRequest,
    SpeakerSource,
    apply_update,
    map_channels,
    parse_fork_parties,
    parse_metadata,
    parse_snapshot_request,
    parse_time,
    serialize_snapshot_request,
)

# siprec.md §14 V5: RFC 7865 §7.
V5 = """<?xml version="1.0" encoding="UTF-8"?>
  <requestsnapshot xmlns='urn:ietf:params:xml:ns:recording:1'>
  <requestreason xml:lang="it">SRS internal error</requestreason>
</requestsnapshot>
"""

# siprec.md §14 V6: RFC 7865 §8.1 complete snapshot.
V6 = """<?xml version="1.0" encoding="UTF-8"?>
  <recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <group group_id="7+OTCyoxTmqmqyA/1weDAg==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
    <!-- Standardized extension -->
    <call-center xmlns='urn:ietf:params:xml:ns:callcenter'>
          <supervisor>sip:alice@atlanta.com</supervisor>
    </call-center>
    <mydata xmlns='http://example.com/my'>
          <structure>FOO!</structure>
          <whatever>bar</whatever>
    </mydata>
  </group>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;
        remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
        <group-ref>7+OTCyoxTmqmqyA/1weDAg==</group-ref>
        <!-- Standardized extension -->
    <mydata xmlns='http://example.com/my'>
          <structure>FOO!</structure>
           <whatever>bar</whatever>
        </mydata>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
        <nameID aor="sip:bob@biloxi.com">
           <name xml:lang="it">Bob</name>
        </nameID>
        <!-- Standardized extension -->
        <mydata xmlns='http://example.com/my'>
                <structure>FOO!</structure>
                <whatever>bar</whatever>
        </mydata>
  </participant>

  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
        <nameID aor="sip:Paul@biloxi.com">
          <name xml:lang="it">Paul</name>
        </nameID>
        <!-- Standardized extension -->
        <mydata xmlns='http://example.com/my'>
           <structure>FOO!</structure>
           <whatever>bar</whatever>
        </mydata>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw=="
          session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <label>96</label>
  </stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw=="
           session_id="hVpd7YQgRW2nD22h7q60JQ==">
         <label>97</label>
  </stream>
  <stream stream_id="8zc6e0lYTlWIINA6GR+3ag=="
           session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <label>98</label>
  </stream>
  <stream stream_id="EiXGlc+4TruqqoDaNE76ag=="
           session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <label>99</label>
  </stream>
  <sessionrecordingassoc session_id="hVpd7YQgRW2nD22h7q60JQ==">
                <associate-time>2010-12-16T23:41:07Z</associate-time>
  </sessionrecordingassoc>
  <participantsessionassoc
       participant_id="srfBElmCRp2QB23b7Mpk0w=="
       session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>
  <participantsessionassoc
       participant_id="zSfPoSvdSDCmU3A3TRDxAw=="
       session_id="hVpd7YQgRW2nD22h7q60JQ==">
           <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>

  <participantstreamassoc
       participant_id="srfBElmCRp2QB23b7Mpk0w==">
           <send>i1Pz3to5hGk8fuXl+PbwCw==</send>
           <send>UAAMm5GRQKSCMVvLyl4rFw==</send>
           <recv>8zc6e0lYTlWIINA6GR+3ag==</recv>
           <recv>EiXGlc+4TruqqoDaNE76ag==</recv>
  </participantstreamassoc>
  <participantstreamassoc
       participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
           <send>8zc6e0lYTlWIINA6GR+3ag==</send>
           <send>EiXGlc+4TruqqoDaNE76ag==</send>
           <recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
           <recv>i1Pz3to5hGk8fuXl+PbwCw==</recv>
  </participantstreamassoc>
</recording>
"""

# siprec.md §14 V7: RFC 7865 §8.2 partial update.
V7 = """<?xml version="1.0" encoding="UTF-8"?>
  <recording xmlns='urn:ietf:params:xml:ns:recording:1'>
    <datamode>partial</datamode>
      <participant
        participant_id="srfBElmCRp2QB23b7Mpk0w==">
        <nameID aor="sip:bob@biloxi.com">
                  <name xml:lang="it">Bob</name>
            </nameID>
      </participant>
      <participantsessionassoc
         participant_id="srfBElmCRp2QB23b7Mpk0w=="
         session_id="hVpd7YQgRW2nD22h7q60JQ==">
        <disassociate-time>2010-12-16T23:41:07Z</disassociate-time>
      </participantsessionassoc>
  </recording>
"""

# siprec.md §14 V8 (RFC 8068 §3.2.1) is V6 with Alice and Bob as the parties and the group-ref
# split across lines; derived here rather than repeated.
V8 = (
    V6.replace('aor="sip:bob@biloxi.com"', 'aor="sip:alice@atlanta.com"')
    .replace(">Bob<", ">Alice<")
    .replace('aor="sip:Paul@biloxi.com"', 'aor="sip:bob@biloxy.com"')
    .replace(">Paul<", ">Bob<")
    .replace("7+OTCyoxTmqmqyA/1weDAg==</group-ref>", "7+OTCyoxTmqmqyA/1weDAg==\n  </group-ref>")
)

# siprec.md §14 V9: RFC 8068 §3.2.2 hold, partial update (indented `<?xml`).
V9 = """   <?xml version="1.0" encoding="UTF-8"?>
     <recording xmlns='urn:ietf:params:xml:ns:recording:1'>
       <datamode>partial</datamode>
         <participantstreamassoc
          participant_id="srfBElmCRp2QB23b7Mpk0w==">
          <recv>8zc6e0lYTlWIINA6GR+3ag==</recv>
          <recv>EiXGlc+4TruqqoDaNE76ag==</recv>
         </participantstreamassoc>
         <participantstreamassoc
          participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
           <send>8zc6e0lYTlWIINA6GR+3ag==</send>
           <send>EiXGlc+4TruqqoDaNE76ag==</send>
          </participantstreamassoc>
        </recording>
"""

# siprec.md §14 V10: RFC 8068 §3.2.2 resume.
V10 = """<?xml version="1.0" encoding="UTF-8"?>
  <recording xmlns='urn:ietf:params:xml:ns:recording:1'>
    <datamode>partial</datamode>
      <participantstreamassoc
       participant_id="srfBElmCRp2QB23b7Mpk0w==">
       <send>i1Pz3to5hGk8fuXl+PbwCw==</send>
       <send>UAAMm5GRQKSCMVvLyl4rFw==</send>
       <recv>8zc6e0lYTlWIINA6GR+3ag==</recv>
       <recv>EiXGlc+4TruqqoDaNE76ag==</recv>
      </participantstreamassoc>
      <participantstreamassoc
       participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
        <send>8zc6e0lYTlWIINA6GR+3ag==</send>
        <send>EiXGlc+4TruqqoDaNE76ag==</send>
        <recv>i1Pz3to5hGk8fuXl+PbwCw==</recv>
       <recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
       </participantstreamassoc>
     </recording>
"""

# siprec.md §14 V11: RFC 8068 §3.2.4 BYE with a partial update.
V11 = """<?xml version="1.0" encoding="UTF-8"?>
    <recording xmlns='urn:ietf:params:xml:ns:recording:1'>
           <datamode>partial</datamode>
       <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
          <stop-time>2010-12-16T23:41:07Z</stop-time>
       </session>
       <participantsessionassoc
          participant_id="srfBElmCRp2QB23b7Mpk0w=="
          session_id="hVpd7YQgRW2nD22h7q60JQ==">
         <disassociate-time>2010-12-16T23:41:07Z</disassociate-time>
        </participantsessionassoc>

       <participantsessionassoc
          participant_id="zSfPoSvdSDCmU3A3TRDxAw=="
         session_id="hVpd7YQgRW2nD22h7q60JQ==">
          <disassociate-time>2010-12-16T23:41:07Z</disassociate-time>
        </participantsessionassoc>
   </recording>
"""

BOB = "srfBElmCRp2QB23b7Mpk0w=="
PAUL = "zSfPoSvdSDCmU3A3TRDxAw=="
SESSION = "hVpd7YQgRW2nD22h7q60JQ=="


def labels_sent(meta: RecordingMetadata, participant_id: str) -> tuple[list[str], list[str]]:
    by_id = {s.stream_id: s.label or "" for s in meta.streams}
    assoc = next(a for a in meta.participant_stream_assocs if a.participant_id == participant_id)
    return sorted(by_id[i] for i in assoc.send), sorted(by_id[i] for i in assoc.recv)


def test_v5_snapshot_request_parses_and_round_trips() -> None:
    request = parse_snapshot_request(V5)
    assert request == SnapshotRequest(reason="SRS internal error", lang="it")
    assert parse_snapshot_request(serialize_snapshot_request(request)) == request
    assert (
        parse_snapshot_request(serialize_snapshot_request(SnapshotRequest())) == SnapshotRequest()
    )


def test_snapshot_request_is_not_metadata() -> None:
    with pytest.raises(SiprecMetadataError, match="unexpected root element 'requestsnapshot'"):
        parse_metadata(V5)
    with pytest.raises(SiprecMetadataError, match="root element is not requestsnapshot"):
        parse_snapshot_request(V6)


def test_v6_complete_snapshot() -> None:
    meta = parse_metadata(V6)
    assert meta.dialect is Dialect.RFC7865
    assert meta.datamode is DataMode.COMPLETE
    assert [p.name_ids[0].name for p in meta.participants] == ["Bob", "Paul"]
    assert [s.label for s in meta.streams] == ["96", "97", "98", "99"]
    assert labels_sent(meta, BOB) == (["96", "97"], ["98", "99"])
    assert labels_sent(meta, PAUL) == (["98", "99"], ["96", "97"])
    session = meta.sessions[0]
    assert session.sip_session_ids == (
        "ab30317f1a784dc48ff824d0d3715d86; remote=47755a9de7794ba387653f2099600ef2",
    )
    assert session.group_ref == "7+OTCyoxTmqmqyA/1weDAg=="
    assert len(meta.groups[0].extensions) == 2
    assert "FOO!" in meta.groups[0].extensions[1]
    assert meta.groups[0].associate_time is not None
    assert meta.groups[0].associate_time.utc == datetime(2010, 12, 16, 23, 41, 7, tzinfo=UTC)
    assert meta.anomalies == ()


def test_v7_applied_to_v6_disassociates_bob() -> None:
    merged = apply_update(parse_metadata(V6), parse_metadata(V7))
    bob = next(a for a in merged.participant_session_assocs if a.participant_id == BOB)
    paul = next(a for a in merged.participant_session_assocs if a.participant_id == PAUL)
    assert bob.disassociate_time is not None
    assert bob.associate_time is not None  # kept from the snapshot
    assert paul.disassociate_time is None
    assert merged.datamode is DataMode.COMPLETE
    assert len(merged.participants) == 2


def test_v8_mapping_with_alice_and_bob() -> None:
    meta = parse_metadata(V8)
    assert [p.name_ids[0].aor for p in meta.participants] == [
        "sip:alice@atlanta.com",
        "sip:bob@biloxy.com",
    ]
    assert meta.sessions[0].group_ref == "7+OTCyoxTmqmqyA/1weDAg=="
    assert labels_sent(meta, BOB) == (["96", "97"], ["98", "99"])


def test_v9_hold_then_v10_resume() -> None:
    v8 = parse_metadata(V8)
    held = apply_update(v8, parse_metadata(V9))
    assert labels_sent(held, BOB) == ([], ["98", "99"])
    assert labels_sent(held, PAUL) == (["98", "99"], [])
    resumed = apply_update(held, parse_metadata(V10))
    for participant in (BOB, PAUL):  # V10 lists Bob's recv in another order than V8
        assert labels_sent(resumed, participant) == labels_sent(v8, participant)


def test_v11_bye_stops_session_and_disassociates_everyone() -> None:
    merged = apply_update(parse_metadata(V8), parse_metadata(V11))
    assert merged.sessions[0].stop_time is not None
    assert merged.sessions[0].group_ref == "7+OTCyoxTmqmqyA/1weDAg=="
    assert all(a.disassociate_time is not None for a in merged.participant_session_assocs)


def test_stop_time_alone_closes_participant_associations() -> None:
    stop = V11.split("<participantsessionassoc", 1)[0] + "</recording>"
    merged = apply_update(parse_metadata(V8), parse_metadata(stop))
    assert all(a.disassociate_time is not None for a in merged.participant_session_assocs)


def test_complete_update_replaces_the_model() -> None:
    first = parse_metadata(V6)
    assert apply_update(first, parse_metadata(V8)) == parse_metadata(V8)


def test_v6_channels_use_associations_not_order() -> None:
    mapping = map_channels(parse_metadata(V6), provisioned_lines=set(), normalise=lambda a: a)
    assert mapping.rule is ChannelRule.UNRESOLVED
    by_aor = map_channels(
        parse_metadata(V6), provisioned_lines={"sip:Paul@biloxi.com"}, normalise=lambda a: a
    )
    assert by_aor.rule is ChannelRule.PROVISIONED_LINE
    assert by_aor.employee_participant_id == PAUL
    assert (by_aor.employee_label, by_aor.other_label) in {("98", "97"), ("98", "96")}
    assert by_aor.speakers is SpeakerSource.STREAM_ASSOCIATION


def test_employee_on_hold_still_gets_channel_zero() -> None:
    held = apply_update(parse_metadata(V8), parse_metadata(V9))
    two = held.streams[:1] + held.streams[2:3]  # keep labels 96 (Alice) and 98 (Bob)
    meta = RecordingMetadata(
        dialect=held.dialect,
        participants=held.participants,
        streams=two,
        participant_stream_assocs=held.participant_stream_assocs,
    )
    mapping = map_channels(meta, provisioned_lines={"sip:alice@atlanta.com"}, normalise=lambda a: a)
    assert (mapping.employee_label, mapping.other_label) == ("96", "98")


# --- dialects (siprec.md §10.2, §16) -------------------------------------------------------

ORACLE = """<?xml version='1.0' encoding='UTF-8'?>
<recording xmlns='urn:ietf:params:xml:ns:recording'>
  <datamode>complete</datamode>
  <session id="AavRXwIIQj1Q39eJulTipQ==">
    <associate-time>2019-03-09T16:50:20</associate-time></session>
  <participant id="fSD3PFErSjNTHLDiXCELjw==" session="AavRXwIIQj1Q39eJulTipQ==">
    <nameID aor="sip:9000@192.168.50.102"><name>9000</name></nameID>
    <send>Q4O8SGLQSilXHUGQX2zd8Q==</send>
    <extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata">
      <apkt:callingParty>true</apkt:callingParty>
      <apkt:ucid>00FA080019</apkt:ucid>
    </extensiondata>
  </participant>
  <participant id="EbccNyypRlFYXTm4iw8hxw==" session="AavRXwIIQj1Q39eJulTipQ==">
    <nameID aor="sip:1002@192.168.50.10"><name>1002</name></nameID>
    <send>l1NyQy8ORSlouUj2G3UE/A==</send>
    <extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata">
      <apkt:callingParty>false</apkt:callingParty>
    </extensiondata>
  </participant>
  <stream id="Q4O8SGLQSilXHUGQX2zd8Q==" session="AavRXwIIQj1Q39eJulTipQ==">
    <label>16777227</label><mode>separate</mode></stream>
  <stream id="l1NyQy8ORSlouUj2G3UE/A==" session="AavRXwIIQj1Q39eJulTipQ==">
    <label>16777228</label><mode>separate</mode></stream>
</recording>
"""


def test_oracle_draft_namespace_inline_send_and_calling_party() -> None:
    meta = parse_metadata(ORACLE)
    assert meta.dialect is Dialect.DRAFT
    assert [p.calling for p in meta.participants] == [True, False]
    assert meta.participants[0].session_id == "AavRXwIIQj1Q39eJulTipQ=="
    assert meta.sessions[0].associate_time is not None
    assert meta.sessions[0].associate_time.zone_assumed
    assert meta.hints.correlation_ids == ("00FA080019",)
    mapping = map_channels(meta, provisioned_lines={"1002"})
    assert (mapping.employee_label, mapping.other_label) == ("16777228", "16777227")
    assert mapping.speakers is SpeakerSource.INLINE_SEND


BROADWORKS = """<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">
<dataMode>complete</dataMode>
<recording id="urn:uuid:0a"><requestor>SRC</requestor><type>selective</type></recording>
<session id="urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23" group="urn:uuid:g1">
  <start-time>2019-01-13T14:48:35-05:00</start-time></session>
<participant id="urn:uuid:c703d8c4-ac5b-4000-a8ad-a3342ff26072"
    session="urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23">
  <aor>sip:8638254725</aor><send><id>urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb</id></send>
</participant>
<participant id="urn:uuid:p2" session="urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23">
  <aor>sip:+15551234567@sbc;user=phone</aor>
  <send><id>urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb</id></send>
</participant>
<stream id="urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb"
    session="urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23"><label>1</label><mode>mixed</mode></stream>
<extensiondata parent="urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23">
  <broadWorksRecordingMetadata version="3.0">
    <extTrackingID>1142208:1</extTrackingID><userID>caller@democorp.com</userID>
    <callType><termCall><callingPartyNumber>+15551234567</callingPartyNumber>
      <calledPartyNumber>8638254725</calledPartyNumber></termCall></callType>
  </broadWorksRecordingMetadata>
</extensiondata>
</recording_metadata>
"""


def test_broadworks_recording_metadata_root_and_mixed_stream() -> None:
    meta = parse_metadata(BROADWORKS)
    assert meta.dialect is Dialect.BROADWORKS
    assert meta.recording_id == "urn:uuid:0a"
    assert meta.sessions[0].group_ref == "urn:uuid:g1"
    assert meta.participants[0].name_ids[0].aor == "sip:8638254725"
    assert meta.participants[0].send == ("urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb",)
    assert meta.hints.direction is CallDirection.TERMINATING
    assert meta.hints.called_number == "8638254725"
    assert meta.hints.user_id == "caller@democorp.com"
    start = meta.sessions[0].start_time
    assert start is not None
    assert start.utc == datetime(2019, 1, 13, 19, 48, 35, tzinfo=UTC)
    mapping = map_channels(meta, provisioned_lines=set())
    assert mapping.mixed
    assert mapping.rule is ChannelRule.RECORDED_PARTY
    assert mapping.employee_label == "1"
    assert mapping.employee_participant_id == "urn:uuid:c703d8c4-ac5b-4000-a8ad-a3342ff26072"


METASWITCH = """<?xml version="1.0" encoding="UTF-8"?>
<recording id="1cge8uKKEeajkuyezQV3BA==" xmlns="urn:ietf:params:xml:ns:recording">
  <dataMode>complete</dataMode>
  <session id="1cgfOOKKEeajkuyezQV3BA=="/>
  <participant id="pa" session="1cgfOOKKEeajkuyezQV3BA=="><nameID aor="7602922410"/>
    <send>1cgfauKKEeajkuyezQV3BA==</send></participant>
  <participant id="pb" session="1cgfOOKKEeajkuyezQV3BA=="><nameID aor="4155550100"/>
    <send>1cgfauKKEeajkuyezQV3BA==</send></participant>
  <stream id="1cgfauKKEeajkuyezQV3BA==" session_id="1cgfOOKKEeajkuyezQV3BA==">
    <label>1</label></stream>
  <extensiondata><metaswitchRecordingMetadata><callType>terminating</callType>
    <recordedParty>+17602922410</recordedParty></metaswitchRecordingMetadata></extensiondata>
</recording>
"""


def test_metaswitch_unnamespaced_extension_and_recorded_party() -> None:
    meta = parse_metadata(METASWITCH)
    assert meta.recording_id == "1cge8uKKEeajkuyezQV3BA=="
    assert meta.hints.recorded_party == "+17602922410"
    assert len(meta.extensions) == 1
    mapping = map_channels(
        meta, provisioned_lines=set(), normalise=lambda a: (a.lstrip("+1") or None) if a else None
    )
    assert mapping.rule is ChannelRule.RECORDED_PARTY
    assert mapping.employee_participant_id == "pa"
    assert mapping.mixed


AVAYA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <dataMode>partial</dataMode>
  <session session_id="00FA0800191E5C6A1B2C3D"/>
  <participant participant_id="aa11"><nameID aor="sip:ASBCE@asbce.com"/></participant>
  <stream stream_id="" session_id="00FA0800191E5C6A1B2C3D"><label>20</label></stream>
  <participantstreamassoc participant_id="aa11"><send></send></participantstreamassoc>
  <participant><nameID aor="sip:x@y"/></participant>
  <stream stream_id="aa11"><label>10</label></stream>
  <participantstreamassoc/>
</recording>
"""


def test_avaya_datamode_hex_and_empty_ids_and_conflicts() -> None:
    meta = parse_metadata(AVAYA)
    assert meta.datamode is DataMode.PARTIAL
    assert meta.sessions[0].session_id == "00FA0800191E5C6A1B2C3D"
    assert meta.streams[0].stream_id == ""
    assert len(meta.streams) == 1  # "aa11" already names a participant (RFC 7865 §6.10)
    assert meta.participant_stream_assocs[0].send == ()
    assert meta.anomalies == (
        "participant without an id ignored",
        "id 'aa11' used for participant and stream",
        "participantstreamassoc without its ids ignored",
    )


INTRADO = """<?xml version="1.0"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1"><dataMode>complete</dataMode>
  <participant participant_id="c1"><nameID aor="3035550100@host"/><role>calling</role></participant>
  <participant participant_id="c2"><nameID aor="911@psap"/><role>called</role></participant>
  <stream stream_id="s1"><label>1</label></stream>
  <stream stream_id="s2"><label>2</label></stream>
  <participantstreamassoc participant_id="c1"><send>s2</send></participantstreamassoc>
  <participantstreamassoc participant_id="c2"><send>s1</send></participantstreamassoc>
  <ac:GenesysUUID xmlns:ac="http://AudioCodes">GEN-1</ac:GenesysUUID>
</recording>
"""


def test_intrado_role_in_recording_namespace_with_direction() -> None:
    meta = parse_metadata(INTRADO)
    assert [p.calling for p in meta.participants] == [True, False]
    assert meta.hints.correlation_ids == ("GEN-1",)
    assert map_channels(meta, provisioned_lines=set()).rule is ChannelRule.UNRESOLVED
    originating = RecordingMetadata(
        dialect=meta.dialect,
        participants=meta.participants,
        streams=meta.streams,
        participant_stream_assocs=meta.participant_stream_assocs,
        hints=meta.hints.__class__(direction=CallDirection.ORIGINATING),
    )
    mapping = map_channels(originating, provisioned_lines=set(), sdp_labels=["1", "2"])
    assert mapping.rule is ChannelRule.DIRECTION_HINT
    assert (mapping.employee_label, mapping.other_label) == ("2", "1")
    terminating = apply_update(
        originating,
        RecordingMetadata(
            dialect=meta.dialect,
            datamode=DataMode.PARTIAL,
            hints=meta.hints.__class__(direction=CallDirection.TERMINATING),
        ),
    )
    mapping = map_channels(terminating, provisioned_lines=set())
    assert (mapping.employee_label, mapping.other_label) == ("1", "2")


def test_internal_call_prefers_the_caller() -> None:
    meta = parse_metadata(INTRADO)
    mapping = map_channels(meta, provisioned_lines={"3035550100", "911"})
    assert mapping.rule is ChannelRule.INTERNAL_CALL
    assert mapping.employee_participant_id == "c1"


def test_no_streams_gives_document_order_or_nothing() -> None:
    body = (
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
        '<participant participant_id="a"><nameID aor="tel:+15550001"/></participant>'
        '<participant participant_id="b"><nameID aor="tel:+15550002"/></participant>'
        '<stream stream_id="x"><label>0</label></stream>'
        '<stream stream_id="y"><label>1</label></stream>'
        "</recording>"
    )
    mapping = map_channels(parse_metadata(body), provisioned_lines={"+15550002"})
    assert mapping.speakers is SpeakerSource.DOCUMENT_ORDER
    assert (mapping.employee_label, mapping.other_label) == ("1", "0")
    bare = '<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>'
    empty = map_channels(parse_metadata(bare), provisioned_lines=set())
    assert empty.speakers is SpeakerSource.NONE
    assert empty.employee_label is None


def test_no_namespace_prefixed_and_bom_inputs() -> None:
    assert parse_metadata("<recording/>").dialect is Dialect.NO_NAMESPACE
    prefixed = V6.replace("<recording xmlns=", "<r:recording xmlns:r=").replace(
        "</recording>", "</r:recording>"
    )
    assert parse_metadata(prefixed).dialect is Dialect.RFC7865
    assert (
        parse_metadata(b"\xef\xbb\xbf  " + V6.encode()).participants
        == parse_metadata(V6).participants
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('<recording xmlns="urn:x"/>', "unknown metadata namespace 'urn:x'"),
        ("<foo/>", "unexpected root element 'foo'"),
        ("<recording><datamode>half</datamode></recording>", "unknown datamode 'half'"),
        (
            '<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><recording>&b;</recording>',
            "metadata must not contain a DOCTYPE or entity declaration",
        ),
        (
            '<!DOCTYPE r SYSTEM "http://example.com/x.dtd"><recording/>',
            "metadata must not contain a DOCTYPE or entity declaration",
        ),
        ("<a>" * 40 + "</a>" * 40, "metadata nesting exceeds 32 levels"),
        ("<recording>" + " " * 300_000 + "</recording>", "metadata body exceeds 262144 bytes"),
        ("\ud800", "metadata body is not encodable as UTF-8"),
    ],
)
def test_bad_metadata_raises_exact_message(body: str, message: str) -> None:
    with pytest.raises(SiprecMetadataError) as info:
        parse_metadata(body)
    assert str(info.value) == message


def test_external_entity_reference_is_refused() -> None:
    with pytest.raises(SiprecMetadataError):
        parse_metadata('<recording xmlns="urn:ietf:params:xml:ns:recording:1">&xxe;</recording>')


@pytest.mark.parametrize(
    ("raw", "expected", "assumed"),
    [
        ("2017-06-23T12:16:06.040Z", datetime(2017, 6, 23, 12, 16, 6, 40000, tzinfo=UTC), False),
        ("2019-03-09T16:50:20", datetime(2019, 3, 9, 16, 50, 20, tzinfo=UTC), True),
        ("2020-01-01T02:00:00+0200", datetime(2020, 1, 1, tzinfo=UTC), False),
        ("1970-05-13T03:29:05Z", datetime(1970, 5, 13, 3, 29, 5, tzinfo=UTC), False),
        ("2020-13-01T00:00:00Z", None, False),
        ("yesterday", None, False),
    ],
)
def test_timestamps(raw: str, expected: datetime | None, assumed: bool) -> None:  # noqa: FBT001  # parametrized
    value = parse_time(raw)
    assert value.raw == raw
    assert value.utc == expected
    assert value.zone_assumed is assumed


def test_fork_parties_prefer_tel_pai_and_oldest_diversion() -> None:
    parties = parse_fork_parties(
        from_header='"Alice" <sip:alice@pbx>;tag=1',
        to_header="<sip:+44 (20) 7946-0000@carrier;user=phone>",
        p_asserted_identity=("<sip:+447700900001@ims>, <tel:+44-7700-900001>",),
        p_served_user="<sip:+447700900123@ims.mnc001.mcc234.3gppnetwork.org>;sescase=term",
        diversion=("<sip:+441234@a>;reason=unconditional", "<sip:+445678@b>;reason=busy"),
        history_info=('<sip:+449999@c>;index=1, "x,y" <sip:+448888@d>;index=1.1',),
    )
    assert parties.calling is not None
    assert parties.calling.uri == "tel:+44-7700-900001"
    assert parties.calling.number == "+447700900001"
    assert parties.called is not None
    assert parties.called.number == "+442079460000"
    assert parties.served_user is not None
    assert parties.served_user.number == "+447700900123"
    assert parties.original_called is not None
    assert parties.original_called.number == "+445678"
    assert len(parties.asserted) == 2


def test_fork_parties_fall_back_to_from_and_history() -> None:
    parties = parse_fork_parties(
        from_header="<sip:anonymous@anonymous.invalid>;tag=9",
        history_info=("<tel:0201234;phone-context=+44>;index=1",),
    )
    assert parties.calling is not None
    assert parties.calling.withheld
    assert parties.calling.number is None
    assert parties.original_called is not None
    assert parties.original_called.number == "+440201234"
    assert parse_fork_parties().calling is None


@settings(deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_give_metadata_or_our_error(data: bytes) -> None:
    with contextlib.suppress(SiprecMetadataError):
        parse_metadata(data)


@settings(deadline=None)
@given(st.integers(0, len(V6)), st.integers(0, len(V6)), st.text(max_size=20))
@example(start=30, stop=30, insert="A")  # an unknown encoding name ("AUTF-8") once escaped
def test_mutated_snapshot_gives_metadata_or_our_error(start: int, stop: int, insert: str) -> None:
    mutated = V6[:start] + insert + V6[stop:]
    with contextlib.suppress(SiprecMetadataError):
        meta = parse_metadata(mutated)
        map_channels(meta, provisioned_lines={"+15550100"})
        apply_update(meta, meta)


@settings(deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_header_text_never_crashes_fork_parties(text: str) -> None:
    parties = parse_fork_parties(from_header=text, to_header=text, diversion=(text,))
    assert parties.called is not None
