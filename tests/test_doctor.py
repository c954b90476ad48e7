"""``pacsnode doctor`` against real peers: Orthanc, DCMTK's dcmqrscp, storescp and
wlmscpfs, and a pacsnode that refuses some classes, syntaxes and services, over plain
DICOM and TLS. Each report's every check is asserted (its outcome, and what it says
where it matters), for the node as it should be and as it is misconfigured: an AE
title it does not know, a wrong address for ours, a port nobody listens on.

The doctor's side is one config (AE DOCTOR) whose archive holds a CT, an MR in JPEG
2000 Lossless and a Siemens CSA Non-Image object; the doctor listens on its DICOM port.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningServer, ct_dataset, free_port, make_server, save, write_config
from peers import associate, dcmtk, dcmtk_server, orthanc, pacsnode_cli, send_files
from pydicom.data import get_testdata_file
from test_tls import Certificates, make_certificates

from pacsnode.archive.core import Archive, remote_table
from pacsnode.config import RemoteAE, Settings, load_settings
from pacsnode.dimse.scu import Dialer
from pacsnode.doctor.probe import CHECKS, diagnose
from pacsnode.doctor.report import Report

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
CSA = "1.3.12.2.1107.5.9.1"  # Siemens CSA Non-Image: a private class DCMTK does not know
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_XL = "1.2.840.10008.1.2.4.110"
NETWORK_OK = {"tcp": "ok", "tls": "skipped", "association": "ok", "echo": "ok"}
NOT_QR = {c: "not offered" for c in ("find patient", "find study", "find psonly", "move", "get")}


@dataclass
class Home:
    """Our side: config, DICOM port (the doctor's listener), archive, the peers' ports."""

    base: Path
    config: Path
    port: int
    ports: dict[str, int]
    certs: Certificates
    ct: Path

    def settings(self) -> Settings:
        return load_settings(self.config, environ={})

    def cli(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        done = pacsnode_cli("doctor", *args, "--format", "json", "--config", str(self.config))
        assert done.returncode in (0, 1), done.stderr
        return done, json.loads(done.stdout)

    def probe(self, port: int, called: str, calling: str = "DOCTOR", timeout: float = 10) -> Report:
        """The doctor in this process, toward a node on this host."""
        settings = self.settings()
        node = Dialer(settings).to("127.0.0.1", port, called, calling)
        return diagnose(node, settings, timeout=timeout)

    def remote(self, title: str) -> RemoteAE:
        found = remote_table(self.settings()).get(title)
        assert found is not None
        return found


def outcomes(report: dict[str, Any] | Report) -> dict[str, str]:
    """Each check's outcome; every report has every check, in order."""
    document = report.as_json() if isinstance(report, Report) else report
    pairs = [(f["check"], str(f["outcome"])) for f in document["findings"]]
    assert [check for check, _ in pairs] == [check for _, check in CHECKS]
    return dict(pairs)


def finding(report: dict[str, Any], check: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["check"] == check)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    base = tmp_path_factory.mktemp("doctor")
    certs = make_certificates(base / "certs")
    names = ("orthanc", "orthanc_http", "dcmqrscp", "storescp", "wlm", "peer", "peer_tls")
    ports = {name: free_port() for name in names}
    port = free_port()
    remotes = [
        {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": ports["orthanc"]},
        {"ae_title": "DCMQRSCP", "host": "127.0.0.1", "port": ports["dcmqrscp"]},
        {"ae_title": "STORESCP", "host": "127.0.0.1", "port": ports["storescp"]},
        {"ae_title": "PEER", "host": "127.0.0.1", "port": ports["peer"]},
        {"ae_title": "PEERTLS", "host": "127.0.0.1", "port": ports["peer_tls"], "tls": True},
    ]
    settings = {
        "ae_title": "DOCTOR",
        "dicom_port": port,
        "http_port": 0,
        "data_dir": str(base / "data"),
        "tls_certificate": certs.client_pem,
        "tls_private_key": certs.client_key,
        "tls_ca_certificates": certs.ca_pem,
    }
    config = write_config(base / "doctor.toml", settings, remotes)
    ct = save(ct_dataset(), base / "ct.dcm")
    csa = save(ct_dataset(sop_class=CSA), base / "csa.dcm")
    mr = get_testdata_file("MR_small_jp2klossless.dcm")
    done = pacsnode_cli("import", str(ct), str(csa), str(mr), "--config", str(config))
    assert done.returncode == 0, done.stderr
    return Home(base, config, port, ports, certs, ct)


@pytest.fixture(scope="module")
def storescp(home: Home) -> Iterator[int]:
    """DCMTK's storescp as it comes: uncompressed transfer syntaxes only."""
    folder = home.base / "storescp"
    folder.mkdir()
    port = home.ports["storescp"]
    with dcmtk_server(["storescp", "-od", str(folder), str(port)], port, "STORESCP"):
        yield port


# --- Orthanc ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc_node(home: Home, storescp: int) -> Iterator[int]:
    """Orthanc knowing DOCTOR at our port, and ELSEWHERE at storescp's, holding the CT."""
    folder = home.base / "orthanc"
    folder.mkdir()
    modalities = {"doctor": ("DOCTOR", home.port), "elsewhere": ("ELSEWHERE", storescp)}
    with orthanc(folder, modalities, home.ports["orthanc"], home.ports["orthanc_http"]) as node:
        stored = send_files(node.dicom_port, [home.ct])
        assert all(r is not None and r.Status == 0 for r in stored.values())
        yield node.dicom_port


def test_orthanc_as_it_should_be_and_fix(home: Home, orthanc_node: int) -> None:
    done, report = home.cli("ORTHANC", "--fix")
    assert done.returncode == 1  # the archive holds a class Orthanc refuses
    assert outcomes(report) == {
        **NETWORK_OK,
        "storage classes": "ok",
        "transfer syntaxes": "ok",
        "archive": "failed",
        "find patient": "ok",
        "find study": "ok",
        "find psonly": "not offered",
        "relational": "warning",
        "move": "ok",
        "get": "ok",
        "commit": "ok",
        "mwl": "not offered",
        "mpps": "not offered",
    }
    association = finding(report, "association")["data"]
    assert association["implementation_version_name"].startswith("OFFIS_DCMTK")
    classes = finding(report, "storage classes")["data"]
    assert CT in classes["accepted"] and MR in classes["accepted"] and CSA in classes["refused"]
    syntaxes = finding(report, "transfer syntaxes")["data"]
    assert {ELE, ILE, J2K_LOSSLESS} <= set(syntaxes["accepted_by_all"])
    assert JPEG_XL in syntaxes["refused_by_all"]
    archive = finding(report, "archive")
    assert archive["summary"] == "refuses 1 instances the archive holds: Siemens CSA Non-Image: 1"
    assert archive["data"]["converted_syntaxes"] == {}
    assert finding(report, "find patient")["summary"] == (
        "Patient Root: PATIENT found, STUDY found, SERIES found, IMAGE found"
    )
    assert finding(report, "relational")["data"] == {
        "models": {"Patient Root": False, "Study Root": False}
    }
    move = finding(report, "move")
    assert move["data"]["received"] == 1 and move["data"]["status"] == "0000"
    assert f"arrived where we listen (127.0.0.1:{home.port})" in move["summary"]
    assert finding(report, "get")["data"]["received"] == 1
    commit = finding(report, "commit")["data"]
    assert commit == {"association": "new", "committed": 1, "failed": 0}
    assert report["learnt"]["offers"] == ["echo", "store", "find", "move", "get", "commit"]
    assert "written: remote AE ORTHANC: offers echo,store,find,move,get,commit" in done.stderr
    fixed = home.remote("ORTHANC")
    assert fixed.offers == ("echo", "store", "find", "move", "get", "commit")
    assert fixed.transfer_syntaxes == ()  # Orthanc takes every syntax the archive holds


def test_orthanc_sending_to_another_address(home: Home, orthanc_node: int) -> None:
    """Orthanc has ELSEWHERE at storescp's port: it sends there, not to us."""
    report = home.probe(orthanc_node, "ORTHANC", "ELSEWHERE", timeout=2.0)
    assert outcomes(report) == {
        **NETWORK_OK,
        "storage classes": "ok",
        "transfer syntaxes": "ok",
        "archive": "skipped",
        "find patient": "ok",
        "find study": "ok",
        "find psonly": "not offered",
        "relational": "warning",
        "move": "failed",
        "get": "ok",
        "commit": "failed",
        "mwl": "not offered",
        "mpps": "not offered",
    }
    move = report.finding("move")
    assert (move.data["completed"], move.data["received"]) == (1, 0)
    assert move.hint == (
        "the remote knows ELSEWHERE but sends C-MOVE results to another address: it reported "
        f"1 sent, yet nothing arrived where we listen (127.0.0.1:{home.port}); correct the "
        "host and port it has for ELSEWHERE"
    )
    commit = report.finding("commit")
    assert commit.summary == "no report within 2 s"
    assert "check the address the remote has for ELSEWHERE" in commit.hint


def test_orthanc_aborts_for_a_calling_ae_it_does_not_know(home: Home, orthanc_node: int) -> None:
    report = home.probe(orthanc_node, "ORTHANC", "STRANGER")
    failed = ("find patient", "find study", "move", "get", "commit")
    assert outcomes(report) == {
        **NETWORK_OK,
        "storage classes": "ok",
        "transfer syntaxes": "ok",
        "archive": "skipped",
        **{check: "failed" for check in failed},
        "find psonly": "not offered",
        "relational": "warning",
        "mwl": "not offered",
        "mpps": "not offered",
    }
    for check in failed:
        assert "the remote aborted the association at our" in report.finding(check).hint
        assert "check that it knows STRANGER" in report.finding(check).hint
    assert report.learnt.offers == ("echo", "store")


# --- dcmqrscp ---------------------------------------------------------------------------

DCMQRSCP = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
doctor = (DOCTOR, 127.0.0.1, {doctor})
wrongport = (WRONGPORT, 127.0.0.1, {closed})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
DCMQRSCP {storage} RW (100, 1024mb) ANY
AETable END
"""


@pytest.fixture(scope="module")
def dcmqrscp(home: Home) -> Iterator[int]:
    """dcmqrscp knowing DOCTOR at our port and WRONGPORT where nobody listens."""
    storage = home.base / "dcmqrscp"
    storage.mkdir()
    port = home.ports["dcmqrscp"]
    config = home.base / "dcmqrscp.cfg"
    text = DCMQRSCP.format(port=port, doctor=home.port, closed=free_port(), storage=storage)
    config.write_text(text)
    indexed = dcmtk("dcmqridx", str(storage), str(home.ct))
    assert indexed.returncode == 0, indexed.stderr
    with dcmtk_server(["dcmqrscp", "-c", str(config), str(port)], port, "DCMQRSCP"):
        yield port


DCMQRSCP_OUTCOMES = {
    **NETWORK_OK,
    "storage classes": "ok",
    "transfer syntaxes": "ok",
    "find patient": "ok",
    "find study": "ok",
    "find psonly": "ok",
    "relational": "warning",
    "get": "ok",
    "commit": "not offered",
    "mwl": "not offered",
    "mpps": "not offered",
}


def test_dcmqrscp(home: Home, dcmqrscp: int) -> None:
    done, report = home.cli("DCMQRSCP")
    assert done.returncode == 1
    assert outcomes(report) == {**DCMQRSCP_OUTCOMES, "archive": "failed", "move": "ok"}
    assert finding(report, "transfer syntaxes")["summary"] == (
        "accepts only Explicit VR Little Endian, Implicit VR Little Endian, Explicit VR Big "
        "Endian for every class it accepts; refuses the other 35"
    )
    archive = finding(report, "archive")
    assert archive["summary"] == (
        "refuses 1 instances the archive holds: Siemens CSA Non-Image: 1; 1 instances go only "
        "decompressed (JPEG 2000 Image Compression (Lossless Only): 1)"
    )
    assert archive["hint"] == (
        "add their SOP classes to those it accepts, or they cannot be sent to it; let it "
        "accept those transfer syntaxes, and they go as stored"
    )
    assert finding(report, "find psonly")["data"]["levels"] == {
        "PATIENT": {"status": "0000", "matches": 1},
        "STUDY": {"status": "0000", "matches": 1},
    }
    assert finding(report, "relational")["hint"].startswith("it answers hierarchical queries")
    assert finding(report, "move")["data"]["received"] == 1
    assert finding(report, "get")["data"]["received"] == 1
    assert report["learnt"]["offers"] == ["echo", "store", "find", "move", "get"]


def test_dcmqrscp_with_a_wrong_port_or_no_entry_for_us(home: Home, dcmqrscp: int) -> None:
    wrong = home.probe(dcmqrscp, "DCMQRSCP", "WRONGPORT")
    assert outcomes(wrong) == {**DCMQRSCP_OUTCOMES, "archive": "skipped", "move": "failed"}
    move = wrong.finding("move")
    assert move.data["received"] == 0 and move.data["status"] != "0000"
    assert move.hint == (
        "the remote knows WRONGPORT but could not deliver to the address it has for it: "
        f"WRONGPORT listens on 127.0.0.1:{home.port}; check the host and port it has for "
        "WRONGPORT"
    )
    unknown = home.probe(dcmqrscp, "DCMQRSCP", "UNKNOWN")
    assert outcomes(unknown) == {**DCMQRSCP_OUTCOMES, "archive": "skipped", "move": "failed"}
    move = unknown.finding("move")
    assert move.data["status"] == "A801"
    assert move.hint == (
        "the remote does not know UNKNOWN as a move destination: add UNKNOWN there, host "
        f"127.0.0.1, port {home.port}"
    )
    assert "move" not in unknown.learnt.offers and "get" in unknown.learnt.offers


def test_our_port_taken(home: Home, dcmqrscp: int) -> None:
    """Our server (here a storescp) holds our port: what arrives cannot be seen."""
    with dcmtk_server(["storescp", "--ignore", str(home.port)], home.port, "ANY"):
        report = home.probe(dcmqrscp, "DCMQRSCP")
    assert outcomes(report) == {**DCMQRSCP_OUTCOMES, "archive": "skipped", "move": "warning"}
    assert report.listening.startswith(f"cannot listen on port {home.port} (")
    move = report.finding("move")
    assert move.data["completed"] == 1
    assert move.hint.endswith(
        "is our pacsnode server running?): whether it reached us is not known"
    )


# --- storescp and wlmscpfs ------------------------------------------------------------------


def test_storescp_and_fix(home: Home, storescp: int) -> None:
    done, report = home.cli("STORESCP", "--fix")
    assert done.returncode == 1
    assert outcomes(report) == {
        **NETWORK_OK,
        "storage classes": "ok",
        "transfer syntaxes": "ok",
        "archive": "failed",
        **NOT_QR,
        "relational": "skipped",
        "commit": "not offered",
        "mwl": "not offered",
        "mpps": "not offered",
    }
    assert finding(report, "archive")["data"] == {
        "refused_classes": {CSA: 1},
        "converted_syntaxes": {J2K_LOSSLESS: 1},
    }
    assert len(report["learnt"]["storage"]) == len(
        finding(report, "storage classes")["data"]["accepted"]
    )
    assert report["learnt"]["storage"][CT] == [ELE, ILE, "1.2.840.10008.1.2.2"]
    fixed = home.remote("STORESCP")
    assert fixed.offers == ("echo", "store")
    # The archive holds a JPEG 2000 object storescp refuses: convert to what it takes.
    assert fixed.transfer_syntaxes == (ELE, ILE)


@pytest.fixture(scope="module")
def wlm(home: Home) -> Iterator[int]:
    """DCMTK's worklist SCP, with one item for the AE title WLM."""
    folder = home.base / "worklists" / "WLM"
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    dump = home.base / "item.dump"
    dump.write_text(WORKLIST_ITEM)
    made = dcmtk("dump2dcm", str(dump), str(folder / "item.wl"))
    assert made.returncode == 0, made.stderr
    port = home.ports["wlm"]
    with dcmtk_server(["wlmscpfs", "-dfp", str(folder.parent), str(port)], port, "WLM"):
        yield port


WORKLIST_ITEM = """\
(0008,0005) CS [ISO_IR 100]
(0008,0050) SH [ACC123]
(0010,0010) PN [DOE^JANE]
(0010,0020) LO [PID123]
(0010,0030) DA [19700101]
(0010,0040) CS [F]
(0020,000d) UI [1.2.826.0.1.3680043.8.498.1]
(0032,1060) LO [CT HEAD]
(0040,0100) SQ (Sequence with explicit length #=1)
  (fffe,e000) na (Item with explicit length #=6)
    (0008,0060) CS [CT]
    (0040,0001) AE [CT01]
    (0040,0002) DA [20260115]
    (0040,0003) TM [101500]
    (0040,0007) LO [HEAD]
    (0040,0009) SH [SPS1]
  (fffe,e00d) na (ItemDelimitationItem for re-encoding)
(fffe,e0dd) na (SequenceDelimitationItem for re-encoding)
(0040,1001) SH [RP1]
"""
"""What wlmscpfs needs of an item to return it: every attribute it checks is there."""


def test_wlmscpfs_as_text_and_fix_by_address(home: Home, wlm: int) -> None:
    done = pacsnode_cli(
        "doctor", "127.0.0.1", str(wlm), "-aec", "WLM", "--fix", "--config", str(home.config)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [" ".join(line.strip("│ ").split()) for line in done.stdout.splitlines()]
    assert f"WLM@127.0.0.1:{wlm} as DOCTOR" in lines
    assert f"listening for C-MOVE and reports: 127.0.0.1:{home.port}" in lines
    for expected in (
        "echo │ ok │ C-ECHO answered in",
        "storage classes │ not offered │ accepts none of the 226 storage SOP classes proposed",
        "→ it is no Storage SCP for us: nothing can be sent to it",
        "archive │ skipped │ it is no Storage SCP for us",
        "find study │ not offered │ Study Root C-FIND not offered",
        "relational │ skipped │ no C-FIND model offered",
        "mwl │ ok │ worklist answered: items scheduled",
        "mpps │ not offered │ MPPS not offered",
        "nothing failed",
    ):
        assert any(line.startswith(expected) for line in lines), expected
    assert "written: remote AE WLM: offers echo,mwl; transfer syntaxes as stored" in done.stderr
    created = home.remote("WLM")
    assert (created.host, created.port, created.offers) == ("127.0.0.1", wlm, ("echo", "mwl"))


def test_wlmscpfs_called_by_another_title(home: Home, wlm: int) -> None:
    report = home.probe(wlm, "NOTWLM")
    assert outcomes(report) == {
        "tcp": "ok",
        "tls": "skipped",
        "association": "failed",
        **{check: "skipped" for _section, check in CHECKS[3:]},
    }
    association = report.finding("association")
    assert association.summary == (
        "association rejected: rejected-permanent, called AE title not recognized"
    )
    assert association.hint == (
        "the remote is not NOTWLM: give its AE title with -aec, or correct our remote AE "
        "entry for it"
    )
    assert association.data == {"result": 1, "source": 1, "reason": 7}
    assert report.finding("echo").summary == "no association"


# --- another pacsnode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer(home: Home) -> Iterator[RunningServer]:
    """A pacsnode taking only CT and MR, uncompressed, that allows DOCTOR only echo,
    find and store, and rejects other calling AE titles and other called ones."""
    certs = home.certs
    running = make_server(
        home.base,
        "peer",
        ae_title="PEER",
        dicom_port=home.ports["peer"],
        tls_port=home.ports["peer_tls"],
        tls_certificate=certs.server_pem,
        tls_private_key=certs.server_key,
        tls_ca_certificates=certs.ca_pem,
        storage_sop_classes=[CT, MR],
        storage_transfer_syntaxes=[ELE, ILE],
        check_called_ae=True,
        unknown_calling_ae="reject",
        remotes=[
            {
                "ae_title": "DOCTOR",
                "host": "127.0.0.1",
                "port": home.port,
                "allowed": ["echo", "find", "store"],
            }
        ],
    )
    try:
        association = associate(running.port, [(CT, [ELE])], "DOCTOR", "PEER")
        assert association.is_established
        try:
            assert association.send_c_store(home.ct).Status == 0
        finally:
            association.release()
        yield running
    finally:
        running.kill()


REFUSED = ("move", "get", "commit", "mwl")
PEER_OUTCOMES = {
    "storage classes": "ok",
    "transfer syntaxes": "ok",
    "find patient": "ok",
    "find study": "ok",
    "find psonly": "ok",
    "relational": "ok",
    **{check: "failed" for check in REFUSED},
    "mpps": "ok",
}


def test_a_pacsnode_refusing_classes_syntaxes_and_services(home: Home, peer: RunningServer) -> None:
    done, report = home.cli("PEER")
    assert done.returncode == 1
    assert outcomes(report) == {**NETWORK_OK, **PEER_OUTCOMES, "archive": "failed"}
    assert finding(report, "association")["data"]["max_pdu"] == 1048576
    assert finding(report, "storage classes")["data"]["accepted"] == [CT, MR]
    assert finding(report, "storage classes")["summary"] == (
        "accepts 2 of the 226 storage SOP classes proposed"
    )
    assert finding(report, "transfer syntaxes")["summary"] == (
        "accepts only Explicit VR Little Endian, Implicit VR Little Endian for every class "
        "it accepts; refuses the other 36"
    )
    assert finding(report, "archive")["data"] == {
        "refused_classes": {CSA: 1},
        "converted_syntaxes": {J2K_LOSSLESS: 1},
    }
    assert finding(report, "find study")["summary"] == (
        "Study Root: STUDY found, SERIES found, IMAGE found"
    )
    assert finding(report, "relational")["data"]["models"] == {
        "Patient Root": True,
        "Study Root": True,
        "Patient/Study Only": True,
    }
    hints = {
        "move": "the remote does not allow C-MOVE to DOCTOR: allow it there",
        "get": "the remote does not allow C-GET to DOCTOR: allow it there",
        "commit": "the remote does not allow storage commitment for DOCTOR",
        "mwl": "the remote does not allow worklist queries from DOCTOR: allow it there",
    }
    for check, hint in hints.items():
        assert finding(report, check)["hint"] == hint
        assert "0x0124" in finding(report, check)["summary"]
    assert finding(report, "mpps")["summary"].startswith("MPPS offered (negotiated only")
    assert report["learnt"]["offers"] == ["echo", "store", "find", "mpps"]


def test_a_pacsnode_over_tls(home: Home, peer: RunningServer) -> None:
    settings = home.settings()
    node = Dialer(settings).named("PEERTLS")
    assert node is not None and node.tls is not None
    report = diagnose(replace(node, ae_title="PEER"), settings)
    assert outcomes(report) == {
        **NETWORK_OK,
        "tls": "ok",
        **PEER_OUTCOMES,
        "archive": "skipped",
    }
    assert report.finding("tls").data["version"] in ("TLSv1.2", "TLSv1.3")
    untrusting = replace(settings, tls_ca_certificates="")  # the system's CAs only
    distrusted = Dialer(untrusting).named("PEERTLS")
    assert distrusted is not None
    refused = diagnose(replace(distrusted, ae_title="PEER"), untrusting)
    assert outcomes(refused) == {
        "tcp": "ok",
        "tls": "failed",
        **{check: "skipped" for _section, check in CHECKS[2:]},
    }
    tls = refused.finding("tls")
    assert tls.summary.startswith("the remote's certificate is not trusted: ")
    assert tls.hint == (
        "its certificate must be signed by a CA of tls_ca_certificates and name 127.0.0.1"
    )


def test_a_pacsnode_rejecting_our_titles(home: Home, peer: RunningServer) -> None:
    stranger = home.probe(peer.port, "PEER", "STRANGER")
    wrong = home.probe(peer.port, "WRONG")
    for report in (stranger, wrong):
        assert outcomes(report) == {
            "tcp": "ok",
            "tls": "skipped",
            "association": "failed",
            **{check: "skipped" for _section, check in CHECKS[3:]},
        }
    calling = stranger.finding("association")
    assert calling.summary == (
        "association rejected: rejected-permanent, calling AE title not recognized"
    )
    assert calling.hint == (
        "the remote does not know our AE title STRANGER: add STRANGER, with our address "
        f"127.0.0.1 and port {home.port}, to its list of known AEs"
    )
    assert wrong.finding("association").data == {"result": 1, "source": 1, "reason": 7}


def test_nothing_listening(home: Home) -> None:
    closed = free_port()
    report = home.probe(closed, "NOBODY")
    assert outcomes(report) == {
        "tcp": "failed",
        **{check: "skipped" for _section, check in CHECKS[1:]},
    }
    tcp = report.finding("tcp")
    assert tcp.summary == f"connection to 127.0.0.1:{closed} refused"
    assert tcp.hint == (
        f"nothing listens on 127.0.0.1:{closed}: check that the node runs and that {closed} "
        "is its DICOM port"
    )
    done = pacsnode_cli("doctor", "NOBODY", "--config", str(home.config))
    assert done.returncode == 2
    assert "no remote AE 'NOBODY'" in done.stderr


def test_held_is_what_the_archive_shows(home: Home) -> None:
    archive = Archive.open(home.settings())
    try:
        held = archive.index.held()
    finally:
        archive.close()
    assert held == {(CT, ELE): 1, (CSA, ELE): 1, (MR, J2K_LOSSLESS): 1}
