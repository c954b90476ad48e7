"""The REST API an administrator coming from Orthanc looks for: the archive as keyword
JSON with filters and paging, deletion (soft and hard, by role, audited), statistics,
the system summary, echo, query and store toward remote AEs, and an OpenAPI
description with Swagger UI at /docs; against real servers over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port
from openapi_spec_validator import validate
from peers import send_datasets
from pydicom.uid import generate_uid

from pacsnode.archive.core import Archive
from pacsnode.config import Settings
from pacsnode.jobs.queue import JobQueue
from pacsnode.jobs.workers import Workers
from pacsnode.web.app import create_app
from pacsnode.web.openapi import STATIC, describe
from pacsnode.web.roles import required_role

ROOT = ("root", "root-password")
STUDY_A, STUDY_B = generate_uid(), generate_uid()


def fill(server: RunningServer) -> dict[str, str]:
    """DOE^JOHN: study A (CT, 2 instances, 20240105) and study B (MR, 20250310);
    ROE^JANE: one CT study (20250311)."""
    series_a, series_b = generate_uid(), generate_uid()
    datasets = [
        ct_dataset(study=STUDY_A, series=series_a, StudyDate="20240105"),
        ct_dataset(study=STUDY_A, series=series_a, StudyDate="20240105", InstanceNumber=2),
        ct_dataset(study=STUDY_B, series=series_b, modality="MR", StudyDate="20250310"),
        ct_dataset(patient_id="PAT002", patient_name="ROE^JANE", StudyDate="20250311"),
    ]
    assert send_datasets(server.port, datasets) == [0, 0, 0, 0]
    return {
        "series_a": series_a,
        "instance": str(datasets[0].SOPInstanceUID),
        "jane_study": str(datasets[3].StudyInstanceUID),
    }


def get(server: RunningServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, auth=ROOT, timeout=30)


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory(http_auth="basic", http_users=":".join(ROOT))


def test_the_archive_as_keyword_json_with_filters_and_paging(server: RunningServer) -> None:
    uids = fill(server)

    patients = get(server, "/api/patients").json()
    assert patients["total"] == 2
    assert {p["PatientID"]: p["NumberOfPatientRelatedStudies"] for p in patients["items"]} == {
        "PAT001": 2,
        "PAT002": 1,
    }
    does = get(server, "/api/studies", PatientName="doe*", limit=1, offset=1).json()
    assert (does["total"], does["limit"], does["offset"], len(does["items"])) == (2, 1, 1, 1)
    assert does["items"][0]["StudyInstanceUID"] == STUDY_B
    recent = get(server, "/api/studies", StudyDate="20250101-").json()
    assert sorted(s["StudyInstanceUID"] for s in recent["items"]) == sorted(
        [STUDY_B, uids["jane_study"]]
    )
    mr = get(server, "/api/studies", Modality="MR").json()["items"]  # a series key
    assert [s["StudyInstanceUID"] for s in mr] == [STUDY_B]
    assert mr[0]["ModalitiesInStudy"] == "MR" and mr[0]["PatientName"] == "DOE^JOHN"

    study = get(server, f"/api/studies/{STUDY_A}").json()
    assert study["series"] == [uids["series_a"]]
    assert (study["NumberOfStudyRelatedInstances"], study["AccessionNumber"]) == (2, "ACC001")
    one = get(server, f"/api/instances/{uids['instance']}").json()
    assert (one["StudyInstanceUID"], one["SeriesInstanceUID"]) == (STUDY_A, uids["series_a"])
    assert one["stored"]["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert one["stored"]["source_ae"] == "MODALITY"
    patient = get(server, "/api/patients/PAT001").json()
    assert sorted(patient["studies"]) == sorted([STUDY_A, STUDY_B])

    typo = get(server, "/api/studies", PatientNam="DOE*")
    assert (typo.status_code, typo.json()) == (
        400,
        {
            "error": "unknown filter 'PatientNam' (did you mean 'PatientName'?)",
            "field": "PatientNam",
        },
    )
    assert get(server, "/api/series", limit="lots").json() == {
        "error": "limit must be a non-negative integer, not 'lots'",
        "field": "limit",
    }
    missing = get(server, "/api/studies/1.2.3")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "no study 1.2.3 in the archive"},
    )


def test_delete_soft_then_hard_by_role_and_audited(server_factory: ServerFactory) -> None:
    server = server_factory(
        http_auth="basic",
        http_users=[":".join(ROOT), "olga:operator:olga-password", "vera:viewer:vera-password"],
    )
    fill(server)
    olga, vera = ("olga", "olga-password"), ("vera", "vera-password")
    study = f"{server.url}/api/studies/{STUDY_A}"
    files = sorted((server.data_dir / "storage").rglob("*.dcm"))

    assert httpx.delete(study, auth=vera).status_code == 403
    hard_by_operator = httpx.delete(study, params={"hard": "1"}, auth=olga)
    assert hard_by_operator.json() == {
        "error": f"DELETE /api/studies/{STUDY_A} needs the admin role; olga is operator"
    }
    soft = httpx.delete(study, auth=olga)
    assert soft.status_code == 200, soft.text
    assert soft.json() == {
        "level": "study",
        "id": STUDY_A,
        "hard": False,
        "instances": 2,
        "series": 1,
        "studies": [STUDY_A],
        "bytes": soft.json()["bytes"],
    }
    assert get(server, f"/api/studies/{STUDY_A}").status_code == 404
    qido = httpx.get(f"{server.url}/dicom-web/studies", auth=ROOT).json()
    assert STUDY_A not in {match["0020000D"]["Value"][0] for match in qido}
    assert sorted((server.data_dir / "storage").rglob("*.dcm")) == files
    assert httpx.delete(study, auth=olga).status_code == 404  # nothing visible left

    bad = httpx.delete(study, params={"hard": "maybe"}, auth=ROOT)
    assert (bad.status_code, bad.json()["field"]) == (400, "hard")
    hard = httpx.delete(study, params={"hard": "1"}, auth=ROOT)
    assert hard.status_code == 200 and hard.json()["hard"] is True
    assert len(list((server.data_dir / "storage").rglob("*.dcm"))) == len(files) - 2
    stats = get(server, "/api/stats").json()
    assert (stats["studies"], stats["instances"], stats["hidden_instances"]) == (2, 2, 0)

    audited = get(server, "/api/audit", event="110105").json()
    deletions = sorted((entry["user"], "hard" in entry["xml"]) for entry in audited)
    assert deletions == [("olga", False), ("root", True)]
    assert all(entry["studies"] == [STUDY_A] for entry in audited)


def test_required_roles_of_the_new_routes() -> None:
    assert required_role("DELETE", "/api/studies/1.2.3") == "operator"
    assert required_role("DELETE", "/api/patients/PAT001", "issuer=X") == "operator"
    assert required_role("DELETE", "/api/series/1.2.3", "hard=1") == "admin"
    assert required_role("DELETE", "/api/instances/1.2.3", "hard=0") == "admin"
    assert required_role("DELETE", "/api/instances/1.2.3", "hard=") == "admin"
    for action in ("echo", "query", "store", "retrieve"):
        assert required_role("POST", f"/api/remote/WS1/{action}") == "operator"
    assert required_role("GET", "/api/stats") == "viewer"
    assert required_role("GET", "/api/system") == "viewer"


def test_stats_and_system(server: RunningServer) -> None:
    fill(server)
    stats = get(server, "/api/stats").json()
    assert {k: stats[k] for k in ("patients", "studies", "series", "instances")} == {
        "patients": 2,
        "studies": 3,
        "series": 3,
        "instances": 4,
    }
    assert stats["bytes"] == sum(p.stat().st_size for p in server.data_dir.rglob("*.dcm"))
    assert 0 < stats["disk_free_bytes"] <= stats["disk_total_bytes"]
    system = get(server, "/api/system").json()
    assert (system["name"], system["ae_title"], system["dicom_port"]) == (
        "pacsnode",
        "PACSNODE",
        server.port,
    )
    assert system["config_file"] == str(server.config_path)
    assert system["database_backend"] == "sqlite"
    assert "root-password" not in str(system)


def wait_for_job(server: RunningServer, pk: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job = get(server, f"/api/jobs/{pk}").json()
        if job["status"] in ("done", "failed") or job["attempts"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_echo_query_and_store_toward_a_remote_ae(server_factory: ServerFactory) -> None:
    other = server_factory(ae_title="OTHER", http_auth="basic", http_users=":".join(ROOT))
    closed = free_port()
    server = server_factory(
        http_auth="basic",
        http_users=":".join(ROOT),
        remotes=[
            {"ae_title": "OTHER", "host": "127.0.0.1", "port": other.port},
            {"ae_title": "AWAY", "host": "127.0.0.1", "port": closed},
            {"ae_title": "LISTENER", "host": "127.0.0.1", "port": 1, "offers": ["store"]},
        ],
    )
    fill(server)
    assert send_datasets(other.port, [ct_dataset(study=STUDY_B)]) == [0]

    def post(path: str, **body: Any) -> httpx.Response:
        return httpx.post(f"{server.url}/api/remote{path}", json=body, auth=ROOT, timeout=60)

    echo = post("/OTHER/echo").json()
    assert {k: echo[k] for k in ("ae_title", "status", "ok")} == {
        "ae_title": "OTHER",
        "status": "0x0000",
        "ok": True,
    }
    away = post("/AWAY/echo")
    assert away.status_code == 502
    assert away.json() == {
        "error": f"no association with AWAY@127.0.0.1:{closed}: cannot connect (Connection refused)"
    }
    assert post("/LISTENER/echo").json() == {
        "error": "LISTENER does not offer echo",
        "field": "remote",
    }
    assert post("/NOBODY/echo").status_code == 404

    found = post(
        "/OTHER/query", level="STUDY", keys={"StudyInstanceUID": STUDY_B, "PatientName": ""}
    )
    assert found.status_code == 200, found.text
    [match] = found.json()["matches"]
    assert (match["StudyInstanceUID"], match["PatientName"]) == (STUDY_B, "DOE^JOHN")
    assert match["QueryRetrieveLevel"] == "STUDY"
    wrong = post("/OTHER/query", level="FRAME")
    assert wrong.json() == {
        "error": "the study model has the levels STUDY, SERIES, IMAGE",
        "field": "level",
    }

    queued = post("/OTHER/store", study=STUDY_A)
    assert queued.status_code == 202, queued.text
    assert queued.json()["description"] == f"store study {STUDY_A} to OTHER"
    job = wait_for_job(server, queued.json()["id"])
    assert (job["kind"], job["status"]) == ("store", "done"), job
    held = get(other, "/api/studies", StudyInstanceUID=STUDY_A).json()
    assert [s["NumberOfStudyRelatedInstances"] for s in held["items"]] == [2]
    nothing = post("/OTHER/store", study="1.2.3")
    assert (nothing.status_code, nothing.json()) == (
        404,
        {"error": "the archive holds no study 1.2.3"},
    )


def test_openapi_describes_every_route_with_schemas(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", http_auth="basic", http_users=("a:b",))
    archive = Archive(settings)
    try:
        app = create_app(archive, Workers(JobQueue(archive.database)))
        document = describe(app.routes, archive.settings)
    finally:
        archive.close()
    validate(document)  # a valid OpenAPI 3.1 document
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) > 70
    for path, method, operation in operations:
        name = f"{method.upper()} {path}"
        assert " " in operation["summary"], f"{name}: {operation['summary']!r}"
        assert any(code.startswith("2") for code in operation["responses"]), name
        without_body = ("/echo", "/retry", "/cancel", "/purge", "/restore", "/run")
        if method in ("post", "put") and not path.endswith(without_body):
            assert "requestBody" in operation, name
    studies = document["paths"]["/api/studies/{id}"]["delete"]
    assert [p["name"] for p in studies["parameters"]] == ["id", "hard", "reason"]
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "basic": {"type": "http", "scheme": "basic"},
    }
    remote = document["components"]["schemas"]["RemoteAE"]["properties"]
    assert remote["visible"]["type"] == "object" and remote["port"] == {"type": "integer"}


def test_docs_are_served_from_the_package(server: RunningServer) -> None:
    redirected = httpx.get(f"{server.url}/docs", auth=ROOT)
    assert redirected.status_code == 307 and redirected.headers["location"] == "/docs/"
    page = get(server, "/docs/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="swagger-ui/swagger-ui-bundle.js"' in page.text
    assert 'url: "../openapi.json"' in page.text
    bundle = get(server, "/docs/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.content == (STATIC / "swagger-ui" / "swagger-ui-bundle.js").read_bytes()
    assert get(server, "/docs/swagger-ui/swagger-ui.css").status_code == 200
    assert "Apache License" in (STATIC / "swagger-ui" / "LICENSE").read_text()
    assert httpx.get(f"{server.url}/docs/").status_code == 401  # not without logging in
    described = get(server, "/openapi.json").json()
    assert described["paths"]["/api/remote/{ae}/store"]["post"]["summary"] == (
        "Queue sending a study, series or instances of the archive; 202 with the job id."
    )


def test_access_log_and_log_file(server_factory: ServerFactory, tmp_path: Path) -> None:
    log_file = tmp_path / "pacsnode.log"
    server = server_factory(
        http_auth="basic",
        http_users=":".join(ROOT),
        http_access_log=True,
        log_file=str(log_file),
    )
    assert get(server, "/api/stats", limit="1").status_code == 200
    assert httpx.get(f"{server.url}/api/stats").status_code == 401
    server.wait_for_log('pacsnode.http.access: 127.0.0.1 - "GET /api/stats" 401')
    lines = [line for line in log_file.read_text().splitlines() if "pacsnode.http.access" in line]
    assert any(
        line.endswith(" ms") and '127.0.0.1 root "GET /api/stats?limit=1" 200 ' in line
        for line in lines
    ), lines
    assert "pacsnode ready" in log_file.read_text()
