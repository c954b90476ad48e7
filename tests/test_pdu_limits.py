"""No P-DATA-TF we send is longer than its receiver announced it can take (PS3.8 D.1),
measured on the wire by a relay between real peers and the real server: C-FIND
answers, C-MOVE responses, and the C-STORE sub-operations of a C-MOVE (on its own
association) and of a C-GET (on the requestor's). CDRClient announces 16,384 bytes
(digest-000_004 B7 item 3); 4,096 is the smallest DCMTK lets a peer announce.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from pdu import Association, Relay
from peers import associate, dcmtk, send_datasets
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from test_routing import StoreScp

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
MAXIMA = [16384, 4096]
PIXELS = 256  # 256x256 16-bit: 128 KiB of pixel data per instance, many PDUs each


def assert_within_limits(association: Association, lengths: list[int], carried: int) -> None:
    """No P-DATA-TF of the association beyond its receiver's maximum; and ``lengths``,
    the P-DATA-TFs toward the peer under test, carried more than ``carried`` bytes,
    more than one PDU's worth: the data had to be fragmented to fit."""
    assert association.oversized() == []
    assert sum(lengths) > carried, "too little crossed to need fragmenting"


@pytest.fixture
def relays() -> Iterator[list[Relay]]:
    opened: list[Relay] = []
    yield opened
    for relay in opened:
        relay.close()


def relay_to(port: int, relays: list[Relay]) -> Relay:
    relay = Relay(port)
    relays.append(relay)
    return relay


def study(server: RunningServer, patient_id: str, comments: str = "") -> str:
    """Two 128 KiB instances of a new study; its Study Instance UID."""
    uid = generate_uid()
    extra = {"PatientComments": comments} if comments else {}
    instances = [
        ct_dataset(study=uid, patient_id=patient_id, rows=PIXELS, InstanceNumber=n, **extra)
        for n in (1, 2)
    ]
    assert send_datasets(server.port, instances, syntaxes=[ImplicitVRLittleEndian]) == [0, 0]
    return uid


@pytest.mark.parametrize("maximum", MAXIMA)
def test_c_find_answers_fit_pynetdicoms_and_findscus_pdus(
    server: RunningServer, relays: list[Relay], maximum: int
) -> None:
    comments = "a comment longer than any PDU " * (maximum // 10)  # 3 PDUs' worth
    assert len(comments) > 2 * maximum
    study(server, "LONGFIND", comments)
    relay = relay_to(server.port, relays)

    assoc = associate(
        relay.port, [(STUDY_ROOT_FIND, [ImplicitVRLittleEndian])], "CDRCLIENT", max_pdu=maximum
    )
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "LONGFIND"
    query.StudyInstanceUID = ""
    query.PatientComments = ""
    answers = [found for status, found in assoc.send_c_find(query, STUDY_ROOT_FIND) if found]
    assoc.release()
    assert [str(found.PatientComments) for found in answers] == [comments.strip()]

    found = dcmtk(
        "findscu", "-S", "--max-pdu", str(maximum), "-aet", "CDRCLIENT", "-aec", "PACSNODE",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=LONGFIND", "-k", "PatientComments",
        "127.0.0.1", str(relay.port),
    )  # fmt: skip
    assert found.returncode == 0, found.stderr

    by_pynetdicom, by_findscu = relay.associations
    for association in (by_pynetdicom, by_findscu):
        assert association.requestor_maximum == maximum
        assert_within_limits(association, association.to_requestor, len(comments))


class Receiver:
    """CDRClient's own Storage SCP during its C-MOVE: pynetdicom or DCMTK storescp,
    announcing ``maximum``, with a relay in front of it."""

    def __init__(self, kind: str, maximum: int, directory: Path, relays: list[Relay]) -> None:
        self.received: list[str] = []
        self.port = free_port()
        if kind == "storescp":
            options = ("+xa", "--max-pdu", str(maximum), "-aet", "CDRCLIENT")
            self.storescp: StoreScp | None = StoreScp(directory, self.port, options).start()
            self.server = None
        else:
            ae = AE(ae_title="CDRCLIENT")
            ae.maximum_pdu_size = maximum
            ae.add_supported_context(CTImageStorage, [ImplicitVRLittleEndian])
            handlers = [(evt.EVT_C_STORE, self._store)]
            self.server = ae.start_server(("127.0.0.1", self.port), False, evt_handlers=handlers)
            self.storescp = None
        self.relay = relay_to(self.port, relays)

    def _store(self, event: evt.Event) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def count(self) -> int:
        if self.storescp is not None:
            return len(list(self.storescp.directory.iterdir()))
        return len(self.received)

    def stop(self) -> None:
        if self.storescp is not None:
            self.storescp.stop()
        if self.server is not None:
            self.server.shutdown()


@pytest.mark.parametrize(
    ("maximum", "receiver_kind", "mover"),
    [(16384, "pynetdicom", "pynetdicom"), (4096, "storescp", "movescu")],
)
def test_c_move_responses_and_sub_operations_fit_the_peers_pdus(
    server_factory: ServerFactory,
    relays: list[Relay],
    tmp_path: Path,
    maximum: int,
    receiver_kind: str,
    mover: str,
) -> None:
    receiver = Receiver(receiver_kind, maximum, tmp_path / "received", relays)
    try:
        destination = {"ae_title": "CDRCLIENT", "host": "127.0.0.1", "port": receiver.relay.port}
        server = server_factory(remotes=[destination])
        uid = study(server, "LONGMOVE")
        relay = relay_to(server.port, relays)
        if mover == "pynetdicom":
            assoc = associate(
                relay.port,
                [(STUDY_ROOT_MOVE, [ImplicitVRLittleEndian])],
                "CDRCLIENT",
                max_pdu=maximum,
            )
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = uid
            responses = assoc.send_c_move(identifier, "CDRCLIENT", STUDY_ROOT_MOVE)
            statuses = [int(status.Status) for status, _ in responses]
            assoc.release()
            assert statuses[-1] == 0x0000, statuses
        else:
            moved = dcmtk(
                "movescu", "-S", "--max-pdu", str(maximum), "-aet", "CDRCLIENT",
                "-aec", "PACSNODE", "-aem", "CDRCLIENT", "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={uid}", "127.0.0.1", str(relay.port),
            )  # fmt: skip
            assert moved.returncode == 0, moved.stderr
        assert receiver.count() == 2
    finally:
        receiver.stop()

    [requested] = relay.associations
    assert requested.requestor_maximum == maximum
    assert requested.oversized() == [] and requested.to_requestor  # the C-MOVE responses
    [sub_association] = receiver.relay.associations
    assert sub_association.acceptor_maximum == maximum
    assert_within_limits(sub_association, sub_association.to_acceptor, 2 * PIXELS * PIXELS * 2)


@pytest.mark.parametrize("maximum", MAXIMA)
def test_c_get_sub_operations_fit_the_requestors_pdu(
    server: RunningServer, relays: list[Relay], maximum: int
) -> None:
    uid = study(server, "LONGGET")
    relay = relay_to(server.port, relays)
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="CDRCLIENT")
    ae.add_requested_context(STUDY_ROOT_GET, [ImplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        relay.port,
        ae_title="PACSNODE",
        max_pdu=maximum,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uid
    statuses = [int(status.Status) for status, _ in assoc.send_c_get(identifier, STUDY_ROOT_GET)]
    assoc.release()
    assert statuses[-1] == 0x0000 and len(received) == 2
    [association] = relay.associations
    assert association.requestor_maximum == maximum
    assert_within_limits(association, association.to_requestor, 2 * PIXELS * PIXELS * 2)
