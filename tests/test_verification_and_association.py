"""C-ECHO on every uncompressed transfer syntax, association limits and max PDU."""

from __future__ import annotations

import socket

import pytest
from conftest import RunningServer, ServerFactory
from pdu import (
    ABORT,
    ASSOCIATE_AC,
    associate_request,
    context_results,
    echo_request,
    read_pdu,
    rejection,
)
from peers import VERIFICATION, associate, dcmtk

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
UNCOMPRESSED = {
    "implicit little": "1.2.840.10008.1.2",
    "explicit little": "1.2.840.10008.1.2.1",
    "explicit big": "1.2.840.10008.1.2.2",
}


@pytest.mark.parametrize("syntax", UNCOMPRESSED.values(), ids=UNCOMPRESSED.keys())
def test_echo_on_each_uncompressed_syntax_alone(server: RunningServer, syntax: str) -> None:
    assoc = associate(server.port, [(VERIFICATION, [syntax])])
    assert assoc.is_established
    accepted = assoc.accepted_contexts
    assert [str(cx.transfer_syntax[0]) for cx in accepted] == [syntax]
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_echo_refuses_a_compressed_only_proposal(server: RunningServer) -> None:
    """The only context is rejected with result 4 (transfer syntaxes not supported): as
    pynetdicom sees it (it then aborts an association it cannot use), and on the
    wire, where the association is accepted and a C-ECHO sent on that context anyway
    is answered by an A-ABORT, never a response."""
    assoc = associate(server.port, [(VERIFICATION, [JPEG_BASELINE])])
    assert assoc.accepted_contexts == []
    [refused] = assoc.rejected_contexts
    assert (refused.abstract_syntax, refused.result) == (VERIFICATION, 0x04)
    if assoc.is_established:
        assoc.release()

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        raw.sendall(associate_request("RAW", "PACSNODE", [(1, VERIFICATION, [JPEG_BASELINE])]))
        answer = read_pdu(raw)
        assert answer is not None and answer[0] == ASSOCIATE_AC
        assert context_results(answer[1]) == {1: 0x04}
        raw.sendall(echo_request(context_id=1))
        after = read_pdu(raw)
    assert after is None or after[0] == ABORT, after  # never a P-DATA-TF with a response


@pytest.mark.parametrize("count", ["1", "2", "3"])
def test_dcmtk_echoscu(server: RunningServer, count: str) -> None:
    result = dcmtk(
        "echoscu", "-v", "--propose-ts", count, "-aec", "PACSNODE", "127.0.0.1", str(server.port)
    )
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_one_log_line_per_association(server: RunningServer) -> None:
    dcmtk("echoscu", "-aet", "LOGCHECK", "127.0.0.1", str(server.port))
    server.wait_for_log("LOGCHECK@127.0.0.1")  # written once the peer has gone
    lines = [line for line in server.log().splitlines() if "LOGCHECK@127.0.0.1" in line]
    assert len(lines) == 1
    assert "released" in lines[0]


def test_association_limit_rejects_as_transient_local_limit(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(max_associations=2)
    first = associate(server.port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    second = associate(server.port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    assert first.is_established and second.is_established
    assert rejection(server.port) == (0x02, 0x03, 0x02)

    refused = dcmtk("echoscu", "-v", "127.0.0.1", str(server.port))
    assert refused.returncode != 0
    assert "Local Limit Exceeded" in refused.stderr

    first.release()
    again = associate(server.port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    assert again.is_established
    assert again.send_c_echo().Status == 0x0000
    again.release()
    second.release()


def test_max_pdu_is_configurable(server_factory: ServerFactory) -> None:
    server = server_factory(max_pdu_size=16384)
    assoc = associate(server.port, [(VERIFICATION, ["1.2.840.10008.1.2"])])
    assert assoc.acceptor.maximum_length == 16384
    assoc.release()
