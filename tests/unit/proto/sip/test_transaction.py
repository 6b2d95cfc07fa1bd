import itertools
from dataclasses import replace

import pytest

from tapeline.proto.errors import ProtocolViolation
from tapeline.proto.sip.message import SipRequest, SipResponse
from tapeline.proto.sip.parser import parse_datagram
from tapeline.proto.sip.serializer import build_response, serialize
from tapeline.proto.sip.transaction import (
    INVITE_TABLE,
    NON_INVITE_TABLE,
    InviteServerTransaction,
    NonInviteServerTransaction,
    SendBytes,
    ServerTransaction,
    TransactionTimedOut,
    TxInput,
    TxOutput,
    TxState,
    transaction_key,
)
from tests.unit.proto.sip.samples import request

ADDR = ("192.0.2.4", 5060)


def parsed(data: bytes) -> SipRequest:
    message = parse_datagram(data)
    assert isinstance(message, SipRequest)
    return message


INVITE = parsed(request("INVITE"))
BYE = parsed(request("BYE", to_tag="x"))


def answer(req: SipRequest, status: int) -> SipResponse:
    return build_response(req, status, to_tag="srs")


def invite_tx(*, reliable: bool = False) -> InviteServerTransaction:
    return InviteServerTransaction(INVITE, addr=ADDR, reliable=reliable)


def bye_tx(*, reliable: bool = False) -> NonInviteServerTransaction:
    return NonInviteServerTransaction(BYE, addr=ADDR, reliable=reliable)


def sent(outputs: list[TxOutput]) -> list[int]:
    return [o.message.status_code for o in outputs if isinstance(o, SendBytes)]


def state_of(tx: ServerTransaction) -> TxState:
    """Read the state through a call, so mypy does not narrow it across transitions."""
    return tx.state


def drive(tx: ServerTransaction, until: float) -> list[TxOutput]:
    """Fire every timer up to `until`, as an adapter armed on get_timer() would."""
    outputs: list[TxOutput] = []
    while (deadline := tx.get_timer()) is not None and deadline <= until:
        outputs.extend(tx.handle_timer(deadline))
    return outputs


def invite_in(state: TxState) -> InviteServerTransaction:
    tx = invite_tx()
    if state is TxState.COMPLETED:
        tx.send_response(answer(INVITE, 486), now=0)
    elif state is TxState.CONFIRMED:
        tx.send_response(answer(INVITE, 486), now=0)
        tx.handle(TxInput.ACK, now=0)
    elif state is TxState.ACCEPTED:
        tx.send_response(answer(INVITE, 200), now=0)
    elif state is TxState.TERMINATED:
        tx.send_response(answer(INVITE, 486), now=0)
        tx.handle(TxInput.ACK, now=0)
        drive(tx, 100)
    return tx


def non_invite_in(state: TxState) -> NonInviteServerTransaction:
    tx = bye_tx()
    if state is TxState.PROCEEDING:
        tx.send_response(answer(BYE, 100), now=0)
    elif state is TxState.COMPLETED:
        tx.send_response(answer(BYE, 200), now=0)
    elif state is TxState.TERMINATED:
        tx.send_response(answer(BYE, 200), now=0)
        drive(tx, 100)
    return tx


RESPONSE_FOR = {TxInput.SEND_1XX: 180, TxInput.SEND_2XX: 200, TxInput.SEND_FINAL: 486}
INVITE_STATES = [s for s in TxState if s is not TxState.TRYING]
NON_INVITE_STATES = [TxState.TRYING, TxState.PROCEEDING, TxState.COMPLETED, TxState.TERMINATED]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(INVITE_STATES, TxInput)))
def test_invite_table_every_pair(state: TxState, event: TxInput) -> None:
    tx = invite_in(state)
    assert state_of(tx) is state
    status = RESPONSE_FOR.get(event)
    response = None if status is None else answer(INVITE, status)
    entry = INVITE_TABLE.get((state, event))
    if entry is None:
        with pytest.raises(ProtocolViolation, match=rf"^{event.name} is not allowed in state "):
            tx.handle(event, now=1, response=response)
        assert state_of(tx) is TxState.TERMINATED
        assert tx.get_timer() is None
    else:
        tx.handle(event, now=1, response=response)
        assert state_of(tx) is entry[1]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(NON_INVITE_STATES, TxInput)))
def test_non_invite_table_every_pair(state: TxState, event: TxInput) -> None:
    tx = non_invite_in(state)
    assert state_of(tx) is state
    status = RESPONSE_FOR.get(event)
    response = None if status is None else answer(BYE, status)
    entry = NON_INVITE_TABLE.get((state, event))
    if entry is None:
        with pytest.raises(ProtocolViolation, match=rf"^{event.name} is not allowed in state "):
            tx.handle(event, now=1, response=response)
        assert state_of(tx) is TxState.TERMINATED
    else:
        tx.handle(event, now=1, response=response)
        assert state_of(tx) is entry[1]


def test_send_input_without_response_is_a_protocol_violation() -> None:
    tx = invite_tx()
    with pytest.raises(ProtocolViolation, match=r"^SEND_1XX needs a response$"):
        tx.handle(TxInput.SEND_1XX, now=0)
    assert state_of(tx) is TxState.TERMINATED


def test_non_2xx_final_is_retransmitted_by_timer_g_until_timer_h() -> None:
    tx = invite_tx()
    assert tx.get_timer() is None
    assert sent(tx.send_response(answer(INVITE, 486), now=0)) == [486]
    assert tx.get_timer() == 0.5
    assert tx.handle_timer(0.4) == []
    outputs = drive(tx, 40)
    fired = [o for o in outputs if isinstance(o, SendBytes)]
    # G at 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s until H at 64*T1 = 32 s.
    assert len(fired) == 10
    assert outputs[-1] == TransactionTimedOut(key=tx.key, timer=TxInput.TIMER_H)
    assert state_of(tx) is TxState.TERMINATED
    assert tx.get_timer() is None


def test_reliable_transport_has_no_timer_g_and_timer_i_is_zero() -> None:
    tx = invite_tx(reliable=True)
    tx.send_response(answer(INVITE, 603), now=10)
    assert tx.get_timer() == 42
    assert tx.handle(TxInput.ACK, now=11) == []
    assert state_of(tx) is TxState.TERMINATED


def test_ack_confirms_and_timer_i_terminates_after_t4() -> None:
    tx = invite_tx()
    tx.send_response(answer(INVITE, 486), now=0)
    tx.handle(TxInput.ACK, now=1)
    assert state_of(tx) is TxState.CONFIRMED
    assert tx.get_timer() == 6
    assert tx.receive_request(INVITE, now=2) == []
    assert drive(tx, 6) == []
    assert state_of(tx) is TxState.TERMINATED


def test_retransmitted_invite_resends_last_response() -> None:
    tx = invite_tx()
    assert tx.receive_request(INVITE, now=0) == []
    tx.send_response(answer(INVITE, 100), now=0)
    assert sent(tx.receive_request(INVITE, now=0.1)) == [100]
    tx.send_response(answer(INVITE, 486), now=0.2)
    assert sent(tx.receive_request(INVITE, now=0.3)) == [486]
    last = tx.last_response
    assert last is not None
    assert last.status_code == 486


def test_2xx_is_retransmitted_until_ack_then_accepted_until_timer_l() -> None:
    tx = invite_tx(reliable=True)
    tx.send_response(answer(INVITE, 200), now=0)
    assert state_of(tx) is TxState.ACCEPTED
    assert sent(drive(tx, 1.6)) == [200, 200]
    assert tx.receive_request(INVITE, now=1.7) == []
    tx.handle(TxInput.ACK_2XX, now=2)
    assert tx.get_timer() == 32
    assert drive(tx, 40) == []
    assert state_of(tx) is TxState.TERMINATED


def test_2xx_without_ack_times_out_on_timer_l() -> None:
    tx = invite_tx()
    tx.send_response(answer(INVITE, 200), now=0)
    outputs = drive(tx, 40)
    assert outputs[-1] == TransactionTimedOut(key=tx.key, timer=TxInput.TIMER_L)
    assert sent(outputs).count(200) == 10


def test_non_invite_trying_absorbs_then_completed_resends_until_timer_j() -> None:
    tx = bye_tx()
    assert tx.receive_request(BYE, now=0) == []
    assert sent(tx.send_response(answer(BYE, 200), now=0)) == [200]
    assert sent(tx.receive_request(BYE, now=1)) == [200]
    assert tx.get_timer() == 32
    assert drive(tx, 32) == []
    assert state_of(tx) is TxState.TERMINATED


def test_non_invite_reliable_completes_immediately() -> None:
    tx = bye_tx(reliable=True)
    tx.send_response(answer(BYE, 180), now=0)
    assert state_of(tx) is TxState.PROCEEDING
    assert sent(tx.receive_request(BYE, now=0)) == [180]
    tx.send_response(answer(BYE, 200), now=0)
    assert state_of(tx) is TxState.TERMINATED


def test_key_maps_ack_to_invite_and_falls_back_for_rfc2543_branches() -> None:
    ack = parsed(request("ACK"))
    assert transaction_key(ack) == transaction_key(INVITE)
    old = parsed(request("INVITE", branch="1234"))
    key = transaction_key(old)
    assert key.branch == "rfc2543|a84b4c76e66710|1928301774|1|1234"
    assert key.method == "INVITE"
    assert key.sent_by == "pc33.example.com"


def test_response_without_raw_is_serialised_before_sending() -> None:
    tx = bye_tx()
    response = replace(answer(BYE, 200), raw=b"")
    (output,) = tx.send_response(response, now=0)
    assert isinstance(output, SendBytes)
    assert output.data == serialize(response)
    assert output.message.raw == output.data
