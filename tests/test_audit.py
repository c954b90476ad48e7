"""The IHE ATNA audit trail: RFC 5424 frames caught by syslog listeners in the test, from
a real ``pacsnode serve``, each validated against the DICOM audit message schema
(PS3.15 A.5.1, kept in RELAX NG XML form in tests/data)."""

from __future__ import annotations

import base64
import getpass
import io
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import ServerFactory, ct_dataset, free_port, save
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from peers import associate, pacsnode_cli, send_datasets
from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_role, evt
from test_iocm import KOS, note
from test_retrieve_scp import STUDY_ROOT_GET, STUDY_ROOT_MOVE, Receiver
from test_routing import StoreScp, with_routes
from test_stow import multipart, part10, post

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import Received as Incoming
from pacsnode.audit.journal import Journal, Search
from pacsnode.audit.messages import (
    BEGIN_TRANSFERRING,
    CD,
    NODE_AUTHENTICATION,
    URI_MEDIA,
    Builder,
    Participant,
    Source,
    Study,
)
from pacsnode.config import Settings

SCHEMA = etree.RelaxNG(etree.parse(str(Path(__file__).parent / "data" / "audit-message.rng")))
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
FRAME = re.compile(rb"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - \xef\xbb\xbf(.*)", re.DOTALL)


@dataclass
class Frame:
    priority: int
    app_name: str
    msgid: str
    xml: etree._Element

    def event_id(self) -> str:
        return str(self.xml.find("EventIdentification/EventID").get("csd-code"))

    def event_type(self) -> str | None:
        code = self.xml.find("EventIdentification/EventTypeCode")
        return None if code is None else str(code.get("csd-code"))

    def action(self) -> str:
        return str(self.xml.find("EventIdentification").get("EventActionCode"))

    def objects(self, id_type: str) -> list[etree._Element]:
        return [
            o
            for o in self.xml.findall("ParticipantObjectIdentification")
            if o.find("ParticipantObjectIDTypeCode").get("csd-code") == id_type
        ]

    def object_ids(self, id_type: str) -> list[str]:
        return [str(o.get("ParticipantObjectID")) for o in self.objects(id_type)]

    def users(self) -> dict[str, etree._Element]:
        return {str(p.get("UserID")): p for p in self.xml.findall("ActiveParticipant")}


def parse(frame: bytes) -> Frame:
    match = FRAME.fullmatch(frame)
    assert match, frame[:200]
    xml = etree.fromstring(match.group(7))
    assert SCHEMA.validate(xml), (SCHEMA.error_log, match.group(7))
    return Frame(int(match.group(1)), match.group(4).decode(), match.group(6).decode(), xml)


class Collector:
    """A syslog collector: UDP (a datagram per message) or TCP/TLS (octet counting)."""

    def __init__(self, scheme: str, context: ssl.SSLContext | None = None) -> None:
        self.scheme = scheme
        self.context = context
        self.messages: list[Frame] = []
        self._lock = threading.Lock()
        kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if scheme != "udp":
            self.sock.listen()
        target = self._datagrams if scheme == "udp" else self._accept
        threading.Thread(target=target, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _keep(self, frame: bytes) -> None:
        with self._lock:
            self.messages.append(parse(frame))

    def _datagrams(self) -> None:
        while True:
            try:
                self._keep(self.sock.recv(65536))
            except OSError:
                return

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        if self.context is not None:
            connection = self.context.wrap_socket(connection, server_side=True)
        stream = connection.makefile("rb")
        while True:
            length = b""
            while (char := stream.read(1)) not in (b" ", b""):
                length += char
            if not length:
                return
            self._keep(stream.read(int(length)))

    def wait_for(self, test: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.messages if test(m)]
            if found:
                return found[-1]
            time.sleep(0.05)
        seen = [(m.event_id(), m.event_type(), m.action()) for m in self.messages]
        raise AssertionError(f"no such audit message; received {seen}")

    def close(self) -> None:
        self.sock.close()


def event(
    event_id: str, event_type: str | None = None, action: str | None = None
) -> Callable[[Frame], bool]:
    def test(message: Frame) -> bool:
        return (
            message.event_id() == event_id
            and (event_type is None or message.event_type() == event_type)
            and (action is None or message.action() == action)
        )

    return test


@pytest.fixture
def tcp_collector() -> Iterator[Collector]:
    collector = Collector("tcp")
    yield collector
    collector.close()


@pytest.fixture
def udp_collector() -> Iterator[Collector]:
    collector = Collector("udp")
    yield collector
    collector.close()


def test_every_message_kind_validates_against_the_schema() -> None:
    builder = Builder(Source("PACSNODE"))
    us = Participant("PACSNODE", "archive.example", alternative_id="AETITLES=PACSNODE")
    peer = Participant("MODALITY", "192.0.2.7", True, alternative_id="AETITLES=MODALITY")
    study = Study("1.2.3.4", "PAT001", "DOE^JOHN", "ACC001", {"1.2.840.10008.5.1.4.1.1.2": 2})
    admin = Participant("root", "host.example", True)
    messages = [
        builder.application_activity(us, True),
        builder.application_activity(us, False),
        builder.transferred(peer, us, [study], "C", 0),
        builder.transferred(us, peer, [study], "R", 4, peer, "1 instances failed"),
        builder.accessed(Participant("alice", "::1", True), [study], "R"),
        builder.accessed(us, [study], "D"),
        builder.study_deleted(Participant("alice", "::1", True), [study], "soft delete of study"),
        builder.query(peer, us, STUDY_ROOT_FIND, b"\x08\x00\x52\x00", ExplicitVRLittleEndian),
        builder.security_alert(us, peer, NODE_AUTHENTICATION, "192.0.2.7", "refused", 4),
        builder.user_authentication(Participant("alice", "::1", True), us, False, 0),
        builder.user_authentication(Participant("alice", "::1", True), us, True, 0),
        builder.transferred(us, peer, [study], "E", 0, peer, event=BEGIN_TRANSFERRING),
        builder.study_deleted(Participant("alice", "::1", True), [study]),
        builder.media_transfer(
            admin, us, Participant("file:///cd", media_type=CD), [study], True, 0
        ),
        builder.media_transfer(
            admin, us, Participant("file:///in", media_type=URI_MEDIA), [], False, 4
        ),
        builder.patient_record(peer, "PAT001", "DOE^JOHN", "C", {}),
        builder.patient_record(admin, "PAT001", "DOE^JANE", "U", {"PatientName": "DOE^JANE"}),
    ]
    for message in messages:
        assert SCHEMA.validate(etree.fromstring(message.xml)), (SCHEMA.error_log, message.xml)
    # and the schema does reject what the standard forbids: a message without its source
    broken = etree.fromstring(messages[2].xml)
    broken.remove(broken.find("AuditSourceIdentification"))
    assert not SCHEMA.validate(broken)


def test_dimse_store_find_move_and_start_stop_reach_a_tcp_collector(
    server_factory: ServerFactory, tcp_collector: Collector
) -> None:
    receiver = Receiver([ExplicitVRLittleEndian])
    try:
        server = server_factory(
            audit_syslog=tcp_collector.url,
            remotes=[{"ae_title": "RECEIVER", "host": "127.0.0.1", "port": receiver.port}],
        )
        started = tcp_collector.wait_for(event("110100", "110120"))
        assert started.app_name == "pacsnode" and started.msgid == "IHE+RFC-3881"
        assert started.priority == 10 * 8 + 5  # authpriv, notice
        assert started.users()["PACSNODE"].get("AlternativeUserID") == "AETITLES=PACSNODE"

        study = generate_uid()
        cts = [ct_dataset(study=study, patient_id="AUD001", InstanceNumber=n) for n in (1, 2)]
        assert send_datasets(server.port, cts) == [0, 0]
        stored = tcp_collector.wait_for(event("110104", action="C"))
        assert stored.object_ids("110180") == [study]
        assert stored.object_ids("2") == ["AUD001"]
        counts = stored.objects("110180")[0].find("ParticipantObjectDescription/SOPClass")
        assert counts.get("NumberOfInstances") == "2"
        assert stored.users()["MODALITY"].get("UserIsRequestor") == "true"
        created = tcp_collector.wait_for(event("110110", action="C"))
        assert created.object_ids("2") == ["AUD001"]
        assert created.objects("2")[0].findtext("ParticipantObjectName") == "DOE^JOHN"
        assert created.objects("2")[0].get("ParticipantObjectDataLifeCycle") == "1"
        assert list(created.users()) == ["MODALITY"]

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.PatientID = "AUD001"
        identifier.StudyInstanceUID = ""
        assoc = associate(server.port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])], "WS")
        answers = list(assoc.send_c_find(identifier, STUDY_ROOT_FIND))
        assert answers[-1][0].Status == 0
        query = tcp_collector.wait_for(event("110112"))
        [queried] = query.objects("110181")
        assert queried.get("ParticipantObjectID") == STUDY_ROOT_FIND
        raw = base64.b64decode(queried.findtext("ParticipantObjectQuery"))
        decoded = read_dataset(io.BytesIO(raw), is_implicit_VR=False, is_little_endian=True)
        assert decoded.PatientID == "AUD001" and decoded.QueryRetrieveLevel == "STUDY"

        move = Dataset()
        move.QueryRetrieveLevel = "STUDY"
        move.StudyInstanceUID = study
        assoc.release()
        assoc = associate(server.port, [(STUDY_ROOT_MOVE, [ExplicitVRLittleEndian])], "WS")
        statuses = [s.Status for s, _ in assoc.send_c_move(move, "RECEIVER", STUDY_ROOT_MOVE)]
        assoc.release()
        assert statuses[-1] == 0 and len(receiver.received) == 2
        sent = tcp_collector.wait_for(event("110104", action="R"))
        assert sent.object_ids("110180") == [study]
        assert set(sent.users()) == {"PACSNODE", "RECEIVER", "WS"}
        assert sent.users()["WS"].get("UserIsRequestor") == "true"
        begun = tcp_collector.wait_for(event("110102", action="E"))
        assert_begins(tcp_collector, begun, sent, study, source="PACSNODE", destination="RECEIVER")
        assert begun.users()["WS"].get("UserIsRequestor") == "true"

        got = c_get(server.port, study)
        assert got == 2
        fetched = tcp_collector.wait_for(
            lambda m: event("110104", action="R")(m) and "GETSCU" in m.users()
        )
        assert fetched.object_ids("110180") == [study]
        assert fetched.users()["GETSCU"].get("UserIsRequestor") == "true"
        begun = tcp_collector.wait_for(
            lambda m: event("110102", action="E")(m) and "GETSCU" in m.users()
        )
        assert_begins(tcp_collector, begun, fetched, study, source="PACSNODE", destination="GETSCU")

        assert server.stop() == 0
        tcp_collector.wait_for(event("110100", "110121"))
    finally:
        if receiver.server is not None:
            receiver.server.shutdown()


def role(message: Frame, user: str) -> str:
    code = message.users()[user].find("RoleIDCode")
    return "" if code is None else str(code.get("csd-code"))


def assert_begins(
    collector: Collector, begun: Frame, done: Frame, study: str, source: str, destination: str
) -> None:
    """Begin Transferring DICOM Instances (PS3.15 A.5.3.3) names what the Instances
    Transferred message that follows it names, with the same roles, and comes first."""
    assert begun.object_ids("110180") == done.object_ids("110180") == [study]
    assert begun.object_ids("2") == done.object_ids("2")
    described = begun.objects("110180")[0].find("ParticipantObjectDescription/SOPClass")
    assert described.get("NumberOfInstances") == "2"
    assert (role(begun, source), role(begun, destination)) == ("110153", "110152")
    assert collector.messages.index(begun) < collector.messages.index(done)


def test_patient_records_created_and_updated_are_audited(
    server_factory: ServerFactory, udp_collector: Collector
) -> None:
    """The first instance of a patient creates its record; a copy that replaces an
    instance (duplicate policy ``overwrite``, as CDRClient re-sends) with other
    demographics updates it, and the message carries the new values. Another instance
    of a known patient changes nothing, and is not audited as a patient change."""
    server = server_factory(audit_syslog=udp_collector.url, duplicate_policy="overwrite")
    first = ct_dataset(patient_id="PR001", patient_name="DOE^JOHN")
    same = ct_dataset(patient_id="PR001", patient_name="DOE^JOHN", study=first.StudyInstanceUID)
    assert send_datasets(server.port, [first, same]) == [0, 0]
    created = udp_collector.wait_for(event("110110", action="C"))
    corrected = ct_dataset(
        patient_id="PR001",
        patient_name="DOE^JANE",
        study=first.StudyInstanceUID,
        series=first.SeriesInstanceUID,
        instance=first.SOPInstanceUID,
        PatientBirthDate="19700101",
    )
    assert send_datasets(server.port, [corrected]) == [0]
    updated = udp_collector.wait_for(event("110110", action="U"))

    assert created.object_ids("2") == ["PR001"]
    assert list(created.users()) == ["MODALITY"]
    [patient] = updated.objects("2")
    assert patient.get("ParticipantObjectID") == "PR001"
    assert patient.findtext("ParticipantObjectName") == "DOE^JANE"
    assert patient.get("ParticipantObjectDataLifeCycle") == "3"  # amendment
    details = {
        d.get("type"): base64.b64decode(d.get("value")).decode()
        for d in patient.findall("ParticipantObjectDetail")
    }
    assert details == {"PatientName": "DOE^JANE", "PatientBirthDate": "19700101"}
    records = [m for m in udp_collector.messages if m.event_id() == "110110"]
    assert [m.action() for m in records] == ["C", "U"]


def test_routing_begins_and_ends_its_transfer_in_the_trail(
    server_factory: ServerFactory, tcp_collector: Collector, tmp_path: Path
) -> None:
    storescp = StoreScp(tmp_path / "storescp").start()
    try:
        server = server_factory(
            start=False,
            audit_syslog=tcp_collector.url,
            remotes=[{"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp.port}],
        )
        with_routes(server, [{"name": "all", "destinations": ["STORESCP"]}])
        ct = ct_dataset(patient_id="ROUTE1")
        assert send_datasets(server.port, [ct]) == [0]
        sent = tcp_collector.wait_for(
            lambda m: event("110104", action="R")(m) and "STORESCP" in m.users()
        )
        assert storescp.received(ct.SOPInstanceUID) is not None
    finally:
        storescp.stop()
    [begun] = [m for m in tcp_collector.messages if event("110102", action="E")(m)]
    assert begun.object_ids("110180") == sent.object_ids("110180") == [ct.StudyInstanceUID]
    assert begun.object_ids("2") == ["ROUTE1"]
    described = begun.objects("110180")[0].find("ParticipantObjectDescription/SOPClass")
    assert (described.get("UID"), described.get("NumberOfInstances")) == (CTImageStorage, "1")
    assert (role(begun, "PACSNODE"), role(begun, "STORESCP")) == ("110153", "110152")
    assert tcp_collector.messages.index(begun) < tcp_collector.messages.index(sent)


def c_get(port: int, study: str) -> int:
    """C-GET a study on one association; how many instances arrived."""
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="PACSNODE",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    statuses = [status.Status for status, _ in assoc.send_c_get(identifier, STUDY_ROOT_GET)]
    assoc.release()
    assert statuses[-1] == 0
    return len(received)


def test_http_events_reach_a_udp_collector_and_the_local_log(
    server_factory: ServerFactory, udp_collector: Collector
) -> None:
    server = server_factory(audit_syslog=udp_collector.url)
    study = generate_uid()
    ct = ct_dataset(study=study, patient_id="WEB001")
    body = multipart([({"Content-Type": "application/dicom"}, part10(ct))])
    assert post(server, body).status_code == 200
    stored = udp_collector.wait_for(event("110104", action="C"))
    assert stored.object_ids("110180") == [study] and stored.object_ids("2") == ["WEB001"]
    assert stored.users()["anonymous"].get("NetworkAccessPointID") == "127.0.0.1"

    url = f"{server.url}/dicom-web/studies/{study}"
    retrieved = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert retrieved.status_code == 200
    accessed = udp_collector.wait_for(event("110103", action="R"))
    assert accessed.object_ids("110180") == [study]

    assert httpx.get(f"{server.url}/dicom-web/studies?PatientID=WEB001").status_code == 200
    query = udp_collector.wait_for(event("110112"))
    asked = base64.b64decode(query.objects("110181")[0].findtext("ParticipantObjectQuery"))
    assert asked.decode().endswith("/dicom-web/studies?PatientID=WEB001")

    remote = {"host": "127.0.0.1", "port": 104}
    assert httpx.put(f"{server.url}/api/remote/NEWAE", json=remote).status_code == 201
    change = udp_collector.wait_for(event("110113", "110128"))
    assert "NEWAE" in change.xml.findtext("EventIdentification/EventOutcomeDescription")

    found = httpx.get(f"{server.url}/api/audit", params={"patient": "WEB001"}).json()
    assert [entry["event"] for entry in found] == [
        "DICOM Instances Accessed",
        "DICOM Instances Transferred",
        "Patient Record",
    ]
    assert found[1]["studies"] == [study] and found[1]["user"] == "anonymous"
    assert SCHEMA.validate(etree.fromstring(found[1]["xml"]))
    assert found[2]["patients"] == ["WEB001"] and found[2]["action"] == "C"
    by_event = httpx.get(f"{server.url}/api/audit", params={"event": "Network Configuration"})
    assert [entry["event_type"] for entry in by_event.json()] == ["Network Configuration"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert httpx.get(f"{server.url}/api/audit", params={"since": future}).json() == []
    assert httpx.get(f"{server.url}/api/audit", params={"limit": "x"}).status_code == 400
    log_files = list((server.data_dir / "audit").glob("audit-*.log"))
    assert len(log_files) == 1

    downloaded = httpx.get(f"{server.url}/api/studies/{study}/media")
    assert downloaded.status_code == 200
    exported = udp_collector.wait_for(event("110106", action="R"))
    assert exported.object_ids("110180") == [study]
    url = f"{server.url}/api/studies/{study}/media"
    assert (role(exported, url), media_type(exported, url)) == ("110154", "110037")
    assert exported.users()["anonymous"].get("UserIsRequestor") == "true"


def test_refused_association_and_logins_through_a_configured_trail(
    tmp_path: Path, udp_collector: Collector
) -> None:
    audit.configure(Settings(data_dir=tmp_path, audit_syslog=udp_collector.url))
    try:
        audit.association_refused("INTRUDER", "PACSNODE", "192.0.2.9", "calling AE not recognized")
        audit.user_authentication(audit.Actor("alice", "192.0.2.10", True), success=False)
        audit.user_authentication(audit.Actor("alice", "192.0.2.10", True), True, logout=True)
    finally:
        audit.close()
    refused = udp_collector.wait_for(event("110113", "110126"))
    assert refused.xml.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert refused.users()["INTRUDER"].get("NetworkAccessPointID") == "192.0.2.9"
    assert refused.priority == 10 * 8 + 4  # a minor failure is a warning
    failed_login = udp_collector.wait_for(event("110114", "110122"))
    assert failed_login.xml.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    udp_collector.wait_for(event("110114", "110123"))
    logged = Journal(tmp_path / "audit").search(Search(user="alice"))
    assert [entry["event_type"] for entry in logged] == ["Logout", "Login"]


def test_purge_reports_whole_studies_deleted_and_partial_deletions(
    tmp_path: Path, udp_collector: Collector
) -> None:
    """``pacsnode rejected purge`` after a retention-expired note (113039) that rejects
    all of study A and one instance of study B: DICOM Study Deleted (110105) for A,
    DICOM Instances Accessed with action D (110103) for what B lost."""
    config = tmp_path / "pacsnode.toml"
    data = tmp_path / "data"
    config.write_text(f'[server]\ndata_dir = "{data}"\naudit_syslog = "{udp_collector.url}"\n')
    study_a, study_b = generate_uid(), generate_uid()
    a = [ct_dataset(study=study_a, patient_id="DEL001", InstanceNumber=n) for n in (1, 2)]
    b = [ct_dataset(study=study_b, patient_id="DEL002", InstanceNumber=n) for n in (1, 2)]
    expired = note("113039", study_a, [*a, b[0]])
    archive = Archive(Settings(data_dir=data))
    try:
        for n, ds in enumerate([*a, *b, expired]):
            assert archive.ingest(Incoming(path=save(ds, tmp_path / f"{n}.dcm"))).ok
    finally:
        archive.close()

    purged = pacsnode_cli("rejected", "purge", "--config", str(config))

    assert purged.returncode == 0, purged.stderr
    assert "4 instances purged" in purged.stdout  # A's two, B's first, and the note
    deleted = udp_collector.wait_for(event("110105", action="D"))
    assert deleted.object_ids("110180") == [study_a]
    assert deleted.object_ids("2") == ["DEL001"]
    classes = {
        element.get("UID"): element.get("NumberOfInstances")
        for element in deleted.objects("110180")[0].iter("SOPClass")
    }
    assert classes == {CTImageStorage: "2", KOS: "1"}
    [user] = deleted.users().values()
    assert user.get("UserIsRequestor") == "true"
    partly = udp_collector.wait_for(event("110103", action="D"))
    assert partly.object_ids("110180") == [study_b]
    assert partly.object_ids("2") == ["DEL002"]
    counted = partly.objects("110180")[0].find("ParticipantObjectDescription/SOPClass")
    assert counted.get("NumberOfInstances") == "1"


def test_remote_add_command_is_audited_and_found_by_audit_search(
    tmp_path: Path, udp_collector: Collector
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "pacsnode.toml"
    config.write_text(f'[server]\ndata_dir = "{data}"\naudit_syslog = "{udp_collector.url}"\n')
    Archive(Settings(data_dir=data)).close()  # commands change an archive, never make one
    added = pacsnode_cli("remote", "add", "CLIAE", "127.0.0.1", "104", "--config", str(config))
    assert added.returncode == 0, added.stderr
    change = udp_collector.wait_for(event("110113", "110128"))
    assert "CLIAE" in change.xml.findtext("EventIdentification/EventOutcomeDescription")
    found = pacsnode_cli("audit", "search", "--event", "110113", "--json", "--config", str(config))
    assert found.returncode == 0, found.stderr
    [entry] = [json.loads(line) for line in found.stdout.splitlines()]
    assert entry["event_type"] == "Network Configuration"
    refused = pacsnode_cli("audit", "search", "--since", "yesterday", "--config", str(config))
    assert refused.returncode == 2 and "ISO 8601" in refused.stderr


def test_import_and_export_media_commands_are_audited(
    tmp_path: Path, udp_collector: Collector
) -> None:
    """Import (110107, action C) from the files' folder and Export (110106, action R)
    onto a CD file-set: the user, pacsnode as destination or source, and the medium
    with its type (PS3.15 A.5.3.7, A.5.3.8)."""
    config = tmp_path / "pacsnode.toml"
    data = tmp_path / "data"
    config.write_text(f'[server]\ndata_dir = "{data}"\naudit_syslog = "{udp_collector.url}"\n')
    ct = ct_dataset(patient_id="IMP001")
    source = save(ct, tmp_path / "ct.dcm")
    imported = pacsnode_cli("import", str(source), "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    read = udp_collector.wait_for(event("110107", action="C"))
    assert read.object_ids("2") == ["IMP001"]
    assert read.object_ids("110180") == [ct.StudyInstanceUID]
    medium = source.resolve().as_uri()
    assert set(read.users()) == {getpass.getuser(), "PACSNODE", medium}
    assert read.users()[getpass.getuser()].get("UserIsRequestor") == "true"
    assert (role(read, "PACSNODE"), role(read, medium)) == ("110152", "110155")
    assert media_type(read, medium) == "110037"  # URI: a folder, whatever its medium
    created = udp_collector.wait_for(event("110110", action="C"))
    assert created.object_ids("2") == ["IMP001"]

    out = tmp_path / "media"
    exported = pacsnode_cli(
        "export-media", str(out), "--study", ct.StudyInstanceUID, "--config", str(config)
    )
    assert exported.returncode == 0, exported.stderr
    written = udp_collector.wait_for(event("110106", action="R"))
    assert written.object_ids("110180") == [ct.StudyInstanceUID]
    assert written.object_ids("2") == ["IMP001"]
    cd = out.resolve().as_uri()
    assert set(written.users()) == {getpass.getuser(), "PACSNODE", cd}
    assert (role(written, "PACSNODE"), role(written, cd)) == ("110153", "110154")
    assert media_type(written, cd) == "110032"  # STD-GEN-CD
    assert written.users()[cd].get("UserIsRequestor") == "false"


def media_type(message: Frame, user: str) -> str:
    return str(message.users()[user].find("MediaIdentifier/MediaType").get("csd-code"))


def test_a_collector_that_is_down_never_fails_a_store(server_factory: ServerFactory) -> None:
    closed = free_port()
    server = server_factory(audit_syslog=f"tcp://127.0.0.1:{closed}")
    assert send_datasets(server.port, [ct_dataset(patient_id="DOWN01")]) == [0]
    server.wait_for_log(f"audit collector tcp://127.0.0.1:{closed} unreachable")
    found = httpx.get(f"{server.url}/api/audit", params={"patient": "DOWN01"}).json()
    assert sorted(entry["event_id"] for entry in found) == ["110104", "110110"]


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "collector.pem", tmp_path / "collector.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_collector(server_factory: ServerFactory, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    collector = Collector("tls", context)
    try:
        server = server_factory(audit_syslog=collector.url, audit_tls_ca=str(cert))
        assert send_datasets(server.port, [ct_dataset(patient_id="TLS001")]) == [0]
        stored = collector.wait_for(event("110104", action="C"))
        assert stored.object_ids("2") == ["TLS001"]
    finally:
        collector.close()


def test_wrong_collector_setting_is_refused(server_factory: ServerFactory) -> None:
    server = server_factory(audit_syslog="syslog.example:514", start=False)
    with pytest.raises(RuntimeError, match="audit_syslog"):
        server.start()
