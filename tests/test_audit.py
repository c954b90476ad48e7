"""The IHE ATNA audit trail: RFC 5424 frames caught by syslog listeners in the test, from
a real ``pacsnode serve``, each validated against the DICOM audit message schema
(PS3.15 A.5.1, kept in RELAX NG XML form in tests/data)."""

from __future__ import annotations

import base64
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
from test_retrieve_scp import STUDY_ROOT_GET, STUDY_ROOT_MOVE, Receiver
from test_stow import multipart, part10, post

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import Received as Incoming
from pacsnode.audit.journal import Journal, Search
from pacsnode.audit.messages import (
    NODE_AUTHENTICATION,
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

        got = c_get(server.port, study)
        assert got == 2
        fetched = tcp_collector.wait_for(
            lambda m: event("110104", action="R")(m) and "GETSCU" in m.users()
        )
        assert fetched.object_ids("110180") == [study]
        assert fetched.users()["GETSCU"].get("UserIsRequestor") == "true"

        assert server.stop() == 0
        tcp_collector.wait_for(event("110100", "110121"))
    finally:
        if receiver.server is not None:
            receiver.server.shutdown()


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
    ]
    assert found[1]["studies"] == [study] and found[1]["user"] == "anonymous"
    assert SCHEMA.validate(etree.fromstring(found[1]["xml"]))
    by_event = httpx.get(f"{server.url}/api/audit", params={"event": "Network Configuration"})
    assert [entry["event_type"] for entry in by_event.json()] == ["Network Configuration"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert httpx.get(f"{server.url}/api/audit", params={"since": future}).json() == []
    assert httpx.get(f"{server.url}/api/audit", params={"limit": "x"}).status_code == 400
    log_files = list((server.data_dir / "audit").glob("audit-*.log"))
    assert len(log_files) == 1


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


def test_deleted_instances_name_their_study_and_patient(
    tmp_path: Path, udp_collector: Collector
) -> None:
    settings = Settings(data_dir=tmp_path / "data", audit_syslog=udp_collector.url)
    archive = Archive(settings)
    ct = ct_dataset(patient_id="DEL001")
    assert archive.ingest(Incoming(path=save(ct, tmp_path / "ct.dcm"))).ok
    audit.configure(settings, archive.database)
    try:
        audit.instances_deleted(audit.Actor("admin", "192.0.2.1", True), [ct.SOPInstanceUID])
    finally:
        audit.close()
        archive.close()
    deleted = udp_collector.wait_for(event("110103", action="D"))
    assert deleted.object_ids("110180") == [ct.StudyInstanceUID]
    assert deleted.object_ids("2") == ["DEL001"]
    assert list(deleted.users()) == ["admin"]


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
    config = tmp_path / "pacsnode.toml"
    data = tmp_path / "data"
    config.write_text(f'[server]\ndata_dir = "{data}"\naudit_syslog = "{udp_collector.url}"\n')
    ct = ct_dataset(patient_id="IMP001")
    imported = pacsnode_cli("import", str(save(ct, tmp_path / "ct.dcm")), "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    stored = udp_collector.wait_for(event("110104", action="C"))
    assert stored.object_ids("2") == ["IMP001"]
    out = tmp_path / "media"
    exported = pacsnode_cli(
        "export-media", str(out), "--study", ct.StudyInstanceUID, "--config", str(config)
    )
    assert exported.returncode == 0, exported.stderr
    sent = udp_collector.wait_for(event("110104", action="R"))
    assert sent.object_ids("110180") == [ct.StudyInstanceUID]
    assert str(out) in sent.users()


def test_a_collector_that_is_down_never_fails_a_store(server_factory: ServerFactory) -> None:
    closed = free_port()
    server = server_factory(audit_syslog=f"tcp://127.0.0.1:{closed}")
    assert send_datasets(server.port, [ct_dataset(patient_id="DOWN01")]) == [0]
    server.wait_for_log(f"audit collector tcp://127.0.0.1:{closed} unreachable")
    found = httpx.get(f"{server.url}/api/audit", params={"patient": "DOWN01"}).json()
    assert [entry["event_id"] for entry in found] == ["110104"]


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
