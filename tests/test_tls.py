"""DICOM TLS and HTTPS: DCMTK and pynetdicom as TLS clients of a real server, refused
handshakes (no, or a foreign, client certificate; TLS 1.1; plain DICOM), HTTPS with
https Retrieve URLs, pacsnode calling a TLS remote AE, and ``pacsnode tls init``."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    ct_dataset,
    dataset_bytes,
    free_port,
    save,
    stored_path,
    write_config,
)
from cryptography import x509
from peers import dcmtk, pacsnode_cli
from pydicom import Dataset, dcmread
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from typer.testing import CliRunner

from pacsnode.archive.core import Archive
from pacsnode.archive.remotes import RemoteError
from pacsnode.cli import app
from pacsnode.cli.tls import init_certificates
from pacsnode.config import ConfigError, RemoteAE, Settings, load_settings

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


@dataclass(frozen=True)
class Certificates:
    """The files ``pacsnode tls init`` writes, as the paths clients and settings take."""

    ca_pem: str
    server_pem: str
    server_key: str
    client_pem: str
    client_key: str


def make_certificates(folder: Path) -> Certificates:
    init_certificates(folder, [], 30)
    names = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    return Certificates(*(str(folder / name) for name in names))


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def foreign(tmp_path: Path) -> Certificates:
    """Certificates of another CA, which our server does not trust."""
    return make_certificates(tmp_path / "foreign")


def tls_settings(certs: Certificates, **extra: Any) -> dict[str, Any]:
    return {
        "tls_port": free_port(),
        "tls_certificate": certs.server_pem,
        "tls_private_key": certs.server_key,
        "tls_ca_certificates": certs.ca_pem,
        **extra,
    }


def tls_port(server: RunningServer) -> int:
    config = load_settings(server.config_path, environ={})
    return config.tls_port


def client_context(
    certs: Certificates, identity: Certificates | None = None, **versions: ssl.TLSVersion
) -> ssl.SSLContext:
    """A client trusting ``certs``' CA, presenting ``identity``'s client certificate."""
    context = ssl.create_default_context(cafile=certs.ca_pem)
    if identity is not None:
        context.load_cert_chain(identity.client_pem, identity.client_key)
    for name, version in versions.items():
        setattr(context, name, version)
    return context


def tls_associate(port: int, context: ssl.SSLContext, sop_class: str = VERIFICATION) -> Association:
    ae = AE(ae_title="TLSCLIENT")
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate(
        "127.0.0.1",
        port,
        [build_context(sop_class)],
        ae_title="PACSNODE",
        tls_args=(context, "localhost"),
    )


def echo_status(assoc: Association) -> int | None:
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        assoc.release()


def in_index(server: RunningServer, sop_instance_uid: str) -> bool:
    archive = server.archive()
    try:
        return archive.index.find_instance(sop_instance_uid) is not None
    finally:
        archive.close()


def test_dcmtk_echo_store_and_find_over_tls(
    server_factory: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    server = server_factory(**tls_settings(certs, tls_require_client_certificate=True))
    port = tls_port(server)
    assert f"DIMSE TLS server PACSNODE listening on 127.0.0.1:{port}" in server.log()
    client = ["+tls", certs.client_key, certs.client_pem, "+cf", certs.ca_pem]
    target = ["-aec", "PACSNODE", "127.0.0.1", str(port)]

    echo = dcmtk("echoscu", *client, *target)
    assert echo.returncode == 0, echo.stderr

    ds = ct_dataset(patient_id="TLS01")
    path = save(ds, tmp_path / "ct.dcm")
    store = dcmtk("storescu", *client, *target, str(path))
    assert store.returncode == 0, store.stderr
    assert dataset_bytes(stored_path(server, ds.SOPInstanceUID)) == dataset_bytes(path)

    find = dcmtk(
        "findscu", "-v", "-S", *client, *target,
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=TLS01", "-k", "StudyInstanceUID",
    )  # fmt: skip
    output = find.stdout + find.stderr
    assert find.returncode == 0, output
    assert output.count("(Pending)") == 1
    assert ds.StudyInstanceUID in output


def test_scu_commands_use_tls_toward_a_tls_remote_ae(
    server_factory: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    server = server_factory(**tls_settings(certs, tls_require_client_certificate=True))
    port = tls_port(server)
    ds = ct_dataset(patient_id="TLSCLI")
    stored = pacsnode_cli("store", "127.0.0.1", str(server.port), "-aec", "PACSNODE",
                          str(save(ds, tmp_path / "ct.dcm")))  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    client = {
        "ae_title": "CLIENT",
        "data_dir": str(tmp_path / "client-data"),
        "tls_certificate": certs.client_pem,
        "tls_private_key": certs.client_key,
        "tls_ca_certificates": certs.ca_pem,
    }
    server_entry = {"ae_title": "PACSNODE", "host": "127.0.0.1", "port": port}
    plain = write_config(tmp_path / "plain.toml", client, [server_entry])
    tls = write_config(tmp_path / "tls.toml", client, [{**server_entry, "tls": True}])
    target = ["127.0.0.1", str(port), "-aec", "PACSNODE"]

    assert pacsnode_cli("echo", *target, "--config", str(plain)).returncode == 2
    echo = pacsnode_cli("echo", *target, "--config", str(tls))
    assert echo.returncode == 0, echo.stdout + echo.stderr
    found = pacsnode_cli("find", *target, "-k", "PatientID=TLSCLI", "-k", "StudyInstanceUID",
                         "--format", "json", "--config", str(tls))  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert ds.StudyInstanceUID in found.stdout
    assert "DICOM TLS handshake with 127.0.0.1" in server.log()  # the plain attempt


def test_pynetdicom_echo_and_store_over_tls_as_on_the_plain_port(
    server_factory: ServerFactory, certs: Certificates
) -> None:
    server = server_factory(**tls_settings(certs))
    anonymous = client_context(certs)  # a client certificate is optional here
    assert echo_status(tls_associate(tls_port(server), anonymous)) == 0x0000

    ds = ct_dataset(patient_id="TLS02")
    assoc = tls_associate(tls_port(server), client_context(certs, certs), CT)
    assert assoc.is_established
    assert assoc.dul.socket is not None
    connection = assoc.dul.socket.socket
    assert isinstance(connection, ssl.SSLSocket)
    negotiated = connection.version()
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0x0000
    assert negotiated in ("TLSv1.2", "TLSv1.3")
    assert in_index(server, ds.SOPInstanceUID)
    assert server.stop() == 0  # both DIMSE ports closed, then the rest
    assert "stopped" in server.log()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_refused_handshakes_are_logged_and_audited_and_harm_no_one(
    server_factory: ServerFactory, certs: Certificates, foreign: Certificates
) -> None:
    server = server_factory(
        **tls_settings(certs, tls_require_client_certificate=True), acse_timeout=3
    )
    port = tls_port(server)
    silent = socket.create_connection(("127.0.0.1", port))  # says nothing, not even hello

    assert not tls_associate(port, client_context(certs)).is_established
    server.wait_for_log("failed: PEER_DID_NOT_RETURN_A_CERTIFICATE")

    assert not tls_associate(port, client_context(certs, foreign)).is_established
    server.wait_for_log("failed: unable to get local issuer certificate")

    old = client_context(
        certs,
        certs,
        minimum_version=ssl.TLSVersion.TLSv1_1,
        maximum_version=ssl.TLSVersion.TLSv1_1,
    )
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that it is the server that refuses
    assert not tls_associate(port, old).is_established
    server.wait_for_log("failed: UNSUPPORTED_PROTOCOL")

    plain = AE(ae_title="PLAIN")
    plain.acse_timeout = plain.network_timeout = 10
    assert not plain.associate("127.0.0.1", port, [build_context(VERIFICATION)]).is_established
    server.wait_for_log("failed: WRONG_VERSION_NUMBER")

    assert echo_status(tls_associate(port, client_context(certs, certs))) == 0x0000
    verification = [build_context(VERIFICATION)]
    assert echo_status(plain.associate("127.0.0.1", server.port, verification)) == 0x0000
    server.wait_for_log("failed: no handshake within 3 s")
    silent.close()
    alert = "audit: security alert by 127.0.0.1: DICOM TLS handshake failed"
    assert server.log().count(alert) == 5


def test_https_serves_dicomweb_with_https_retrieve_urls(
    server_factory: ServerFactory, certs: Certificates
) -> None:
    server = server_factory(**tls_settings(certs, http_tls=True, tls_port=0))
    assert f"HTTP server listening on 127.0.0.1:{server.http_port} (HTTPS)" in server.log()
    ds = ct_dataset(patient_id="TLS03")
    modality = AE(ae_title="MODALITY")
    modality.add_requested_context(CT)
    assoc = modality.associate("127.0.0.1", server.port, ae_title="PACSNODE")
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()

    base = f"https://localhost:{server.http_port}"
    with httpx.Client(verify=client_context(certs)) as client:
        response = client.get(f"{base}/dicom-web/studies")
    assert response.status_code == 200
    (study,) = response.json()
    retrieve_url = study["00081190"]["Value"][0]
    assert retrieve_url == f"{base}/dicom-web/studies/{ds.StudyInstanceUID}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server.http_port}/dicom-web/studies", timeout=5)


def storescp_tls(certs: Certificates, folder: Path, port: int) -> subprocess.Popen[bytes]:
    """DCMTK's storescp on a TLS port, requiring a client certificate of our CA."""
    server = ["+tls", certs.server_key, certs.server_pem, "+cf", certs.ca_pem]
    process = subprocess.Popen(
        ["storescp", *server, "-aet", "STORESCP", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process
        except OSError:
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.05)


def move(port: int, ds: Dataset, destination: str) -> list[int]:
    """Store ``ds`` at the archive, then C-MOVE its study to ``destination``."""
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(CT)
    ae.add_requested_context(STUDY_ROOT_MOVE)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSNODE")
    assert assoc.send_c_store(ds).Status == 0x0000
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ds.StudyInstanceUID
    statuses = [
        int(s.Status) for s, _ in assoc.send_c_move(identifier, destination, STUDY_ROOT_MOVE)
    ]
    assoc.release()
    return statuses


def test_move_to_tls_remote_aes_goes_over_tls(
    server_factory: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    receiver = server_factory(
        ae_title="RECEIVER", **tls_settings(certs, tls_require_client_certificate=True)
    )
    received = tmp_path / "storescp"
    received.mkdir()
    dcmtk_port = free_port()
    storescp = storescp_tls(certs, received, dcmtk_port)
    remotes = [
        {"ae_title": "RECEIVER", "host": "localhost", "port": tls_port(receiver), "tls": True},
        {"ae_title": "STORESCP", "host": "127.0.0.1", "port": dcmtk_port, "tls": True},
    ]
    archive = server_factory(
        tls_certificate=certs.server_pem,
        tls_private_key=certs.server_key,
        tls_ca_certificates=certs.ca_pem,
        remotes=remotes,
    )
    try:
        first, second = ct_dataset(patient_id="TLS04"), ct_dataset(patient_id="TLS05")
        assert move(archive.port, first, "RECEIVER")[-1] == 0x0000
        assert move(archive.port, second, "STORESCP")[-1] == 0x0000
    finally:
        storescp.terminate()
        storescp.wait(10)
    assert in_index(receiver, first.SOPInstanceUID)
    (file,) = received.iterdir()
    assert dcmread(file).SOPInstanceUID == second.SOPInstanceUID


def test_tls_settings_that_cannot_work_are_refused(certs: Certificates, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need tls_certificate"):
        load_settings(overrides={"tls_port": 2762}, environ={})
    with pytest.raises(ConfigError, match="needs tls_ca_certificates"):
        load_settings(overrides={"tls_require_client_certificate": True}, environ={})
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\ntls_port = {free_port()}\n'
        f'tls_certificate = "{certs.server_pem}"\ntls_private_key = "{certs.client_key}"\n'
    )
    result = pacsnode_cli("serve", "--config", str(config))
    assert result.returncode == 2
    assert "TLS certificate, key or CA bundle unusable" in result.stdout + result.stderr


def test_tls_of_a_remote_ae_is_kept_from_the_config_file(tmp_path: Path) -> None:
    configured = RemoteAE("SECURE", "localhost", 2762, tls=True)
    archive = Archive(Settings(data_dir=tmp_path / "data", remote_ae=(configured,)))
    try:
        archive.remotes.put(replace(configured, description="edited at run time"))
        entry = archive.remotes.entry("SECURE")
        assert (entry.source, entry.remote.description, entry.remote.tls) == (
            "config+database",
            "edited at run time",
            True,
        )
        archive.remotes.put(replace(configured, tls=False))  # as `pacsnode remote add` does
        assert archive.remotes.entry("SECURE").remote.tls
        with pytest.raises(RemoteError, match="config file only"):
            archive.remotes.put(RemoteAE("OTHER", "localhost", 104, tls=True))
    finally:
        archive.close()


def test_tls_init_writes_a_ca_and_certificates_it_signed(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    runner = CliRunner()
    result = runner.invoke(
        app, ["tls", "init", str(folder), "--hostname", "pacs.example", "--days", "7"]
    )
    assert result.exit_code == 0, result.output
    assert f'tls_certificate = "{folder / "server.pem"}"' in result.stdout
    for stem in ("ca", "server", "client"):
        assert stat.S_IMODE((folder / f"{stem}.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "pacs.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert lifetime.days == 7
    again = runner.invoke(app, ["tls", "init", str(folder)])
    assert again.exit_code == 1
    assert "exists" in again.output
