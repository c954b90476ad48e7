"""Access control of the DIMSE door, seen from the peer: A-ASSOCIATE-RJ fields, DIMSE
statuses, DCMTK's words for them, and the server's log and audit trail."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset
from pdu import rejection
from peers import VERIFICATION, associate, dcmtk
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.association import Association

from pacsnode.config import ConfigError, load_settings
from pacsnode.dimse.catalog import MODALITY_WORKLIST_FIND, MPPS_SOP_CLASS
from pacsnode.dimse.qr_model import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE

IVLE = [ImplicitVRLittleEndian]
EVLE = [ExplicitVRLittleEndian]  # what ct_dataset() is encoded in
NOT_AUTHORIZED = 0x0124
PERMANENT_BY_USER = (0x01, 0x01)


def _associate_from(
    address: str, port: int, calling_ae: str, contexts: list[str] | None = None
) -> Association:
    """An association from a chosen local address (loopback has 127.0.0.0/8)."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    requested = [build_context(uid, [ImplicitVRLittleEndian]) for uid in contexts or [VERIFICATION]]
    return ae.associate(
        "127.0.0.1", port, contexts=requested, ae_title="PACSNODE", bind_address=(address, 0)
    )


def _audited(server: RunningServer, *words: str) -> bool:
    """Whether an audit record names all ``words``: the audit trail's files when it
    keeps some, else the lines the audit module logs."""
    folder = server.data_dir / "audit"
    records = [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    records += [line for line in server.log().splitlines() if "pacsnode.audit" in line]
    return any(all(word in record for word in words) for record in records)


def _refusal_logged(server: RunningServer, calling_ae: str, reason: str) -> None:
    line = f"association {calling_ae} -> "
    server.wait_for_log(line)
    logged = [row for row in server.log().splitlines() if line in row and "refused" in row]
    assert logged and "WARNING" in logged[0] and reason in logged[0], logged
    deadline = time.monotonic() + 10  # the audit record follows the log line
    while not _audited(server, calling_ae, reason):
        assert time.monotonic() < deadline, f"refusal of {calling_ae} not audited"
        time.sleep(0.05)


def test_unknown_calling_ae_is_rejected_when_configured(server_factory: ServerFactory) -> None:
    server = server_factory(
        unknown_calling_ae="reject",
        remotes=[{"ae_title": "KNOWN", "host": "127.0.0.1", "port": 104}],
    )
    assert rejection(server.port, calling_ae="STRANGER") == (*PERMANENT_BY_USER, 0x03)
    _refusal_logged(server, "STRANGER", "calling AE title not recognized")

    known = associate(server.port, [(VERIFICATION, IVLE)], calling_ae="KNOWN")
    assert known.is_established
    assert known.send_c_echo().Status == 0x0000
    known.release()

    output = dcmtk("echoscu", "-v", "-aet", "OTHER", "127.0.0.1", str(server.port))
    assert output.returncode != 0
    assert "Calling AE Title Not Recognized" in output.stderr


def test_unknown_calling_ae_gets_the_default_profile(server_factory: ServerFactory) -> None:
    server = server_factory(unknown_ae_allowed=["echo"])
    assoc = associate(server.port, [(VERIFICATION, IVLE), (CTImageStorage, EVLE)], "ANYONE")
    assert assoc.send_c_echo().Status == 0x0000
    refused = assoc.send_c_store(ct_dataset())
    assert refused.Status == NOT_AUTHORIZED
    assoc.release()


def test_called_ae_title_is_checked(server_factory: ServerFactory) -> None:
    server = server_factory(check_called_ae=True)
    assert rejection(server.port, called_ae="SOMEONE_ELSE") == (*PERMANENT_BY_USER, 0x07)
    _refusal_logged(server, "MODALITY", "called AE title not recognized")

    output = dcmtk("echoscu", "-v", "-aec", "WRONG", "127.0.0.1", str(server.port))
    assert output.returncode != 0
    assert "Called AE Title Not Recognized" in output.stderr

    ours = associate(server.port, [(VERIFICATION, IVLE)], called_ae="PACSNODE")
    assert ours.send_c_echo().Status == 0x0000
    ours.release()


def test_any_called_ae_title_is_served_by_default(server: RunningServer) -> None:
    assoc = associate(server.port, [(VERIFICATION, IVLE)], called_ae="ANY_TITLE")
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_host_must_match_when_checked(server_factory: ServerFactory) -> None:
    remote = {"ae_title": "BOUND", "host": "127.0.0.2", "port": 104, "check_host": True}
    named = {"ae_title": "NAMED", "host": "localhost", "port": 104, "check_host": True}
    server = server_factory(remotes=[remote, named])

    elsewhere = rejection(server.port, calling_ae="BOUND", address="127.0.0.1")
    assert elsewhere == (*PERMANENT_BY_USER, 0x03)
    _refusal_logged(server, "BOUND", "127.0.0.1 is not the host 127.0.0.2")

    for address, calling_ae in (("127.0.0.2", "BOUND"), ("127.0.0.1", "NAMED")):
        assoc = _associate_from(address, server.port, calling_ae)
        assert assoc.is_established, calling_ae
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()


def test_too_many_associations_are_refused_as_local_limit(server_factory: ServerFactory) -> None:
    server = server_factory(max_associations=1)
    first = associate(server.port, [(VERIFICATION, IVLE)], calling_ae="FIRST")
    assert first.is_established
    assert rejection(server.port, calling_ae="SECOND") == (0x02, 0x03, 0x02)
    _refusal_logged(server, "SECOND", "local limit exceeded")
    first.release()


def _find_study(assoc: Association, model: str) -> list[int]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    return [int(status.Status) for status, _ in assoc.send_c_find(query, model)]


def test_store_not_allowed_is_refused_and_nothing_is_stored(
    server_factory: ServerFactory,
) -> None:
    viewer = {"ae_title": "VIEWER", "host": "127.0.0.1", "port": 104, "allowed": ["echo", "find"]}
    server = server_factory(remotes=[viewer])
    contexts = [
        (VERIFICATION, IVLE),
        (CTImageStorage, EVLE),
        (STUDY_ROOT_FIND, IVLE),
    ]
    assoc = associate(server.port, contexts, calling_ae="VIEWER")
    dataset = ct_dataset()
    answer = assoc.send_c_store(dataset)
    assert answer.Status == NOT_AUTHORIZED
    assert "store" in str(answer.ErrorComment)
    assert assoc.send_c_echo().Status == 0x0000
    assert _find_study(assoc, STUDY_ROOT_FIND) == [0x0000]
    assoc.release()

    server.wait_for_log("store from VIEWER@127.0.0.1 refused")
    assert _audited(server, "VIEWER", "store refused")
    archive = server.archive()
    try:
        assert archive.index.find_instance(str(dataset.SOPInstanceUID)) is None
        spooled = [p for p in archive.storage.tmp.rglob("*") if p.is_file()]
        assert not spooled  # nor left spooled
    finally:
        archive.close()


def _statuses(port: int, model: str, send: Callable[[Association], list[Dataset]]) -> list[int]:
    """The statuses one request gets, on an association of its own. An empty status is
    a response pynetdicom's own reactor thread took (issue 875, likelier the faster the
    answer): the request is made again on a new association."""
    statuses: list[int] = []
    for _ in range(3):
        assoc = associate(port, [(model, IVLE)])
        try:
            statuses = [int(status.Status) for status in send(assoc) if "Status" in status]
        finally:
            if assoc.is_established:
                assoc.release()
        if statuses:
            break
    return statuses


def test_each_service_not_allowed_is_refused(server_factory: ServerFactory) -> None:
    modality = {"ae_title": "MODALITY", "host": "127.0.0.1", "port": 104, "allowed": ["store"]}
    server = server_factory(remotes=[modality])
    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.StudyInstanceUID = "1.2.3"
    worklist = Dataset()
    worklist.PatientID = ""
    step = Dataset()
    step.PerformedProcedureStepStatus = "IN PROGRESS"
    requests: dict[str, tuple[str, Callable[[Association], list[Dataset]]]] = {
        "echo": (VERIFICATION, lambda a: [a.send_c_echo()]),
        "find": (STUDY_ROOT_FIND, lambda a: [s for s, _ in a.send_c_find(study, STUDY_ROOT_FIND)]),
        "move": (
            STUDY_ROOT_MOVE,
            lambda a: [s for s, _ in a.send_c_move(study, "MODALITY", STUDY_ROOT_MOVE)],
        ),
        "get": (STUDY_ROOT_GET, lambda a: [s for s, _ in a.send_c_get(study, STUDY_ROOT_GET)]),
        "mwl": (
            MODALITY_WORKLIST_FIND,
            lambda a: [s for s, _ in a.send_c_find(worklist, MODALITY_WORKLIST_FIND)],
        ),
        "mpps": (
            MPPS_SOP_CLASS,
            lambda a: [a.send_n_create(step, MPPS_SOP_CLASS, "1.2.3.4")[0]],
        ),
    }
    for service, (model, send) in requests.items():
        assert _statuses(server.port, model, send) == [NOT_AUTHORIZED], service
    for service in ("echo", "find", "move", "get", "mwl", "mpps"):
        server.wait_for_log(f"{service} from MODALITY@127.0.0.1 refused")


def test_a_remote_added_at_run_time_is_enforced(server_factory: ServerFactory) -> None:
    server = server_factory()
    entry = {"host": "127.0.0.1", "port": 104, "allowed": ["echo"]}
    assert httpx.put(f"{server.url}/api/remote/LIMITED", json=entry).status_code == 201
    assoc = associate(server.port, [(CTImageStorage, EVLE)], calling_ae="LIMITED")
    assert assoc.send_c_store(ct_dataset()).Status == NOT_AUTHORIZED
    assoc.release()

    checked = {**entry, "check_host": True}
    answer = httpx.put(f"{server.url}/api/remote/LIMITED", json=checked)
    assert answer.status_code == 400
    assert "check_host" in answer.text


def test_spanning_targets_pass_the_called_ae_check(server_factory: ServerFactory) -> None:
    other = {"ae_title": "OTHERPACS", "host": "127.0.0.1", "port": 104, "offers": ["move"]}
    server = server_factory(check_called_ae=True, move_spanning=True, remotes=[other])
    assoc = associate(server.port, [(VERIFICATION, IVLE)], called_ae="OTHERPACS")
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert rejection(server.port, called_ae="NOBODY") == (*PERMANENT_BY_USER, 0x07)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nunknown_calling_ae = "deny"\n', "unknown_calling_ae"),
        ('[server]\nunknown_ae_allowed = ["echo", "print"]\n', "unknown service 'print'"),
        (
            '[[remote_ae]]\nae_title = "A"\nhost = "h"\nport = 104\nallowed = ["stor"]\n',
            "unknown service 'stor' \\(did you mean 'store'\\?\\)",
        ),
    ],
)
def test_access_settings_are_checked(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})
