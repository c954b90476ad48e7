"""The web UI and the OHIF viewer in Debian's Chromium, against a real server.

One server (HTTP Basic, three users), one browser and one OHIF install serve the whole
module; each test walks through a page the way an administrator would and checks
what the archive did. The viewer is installed with the real ``pacsnode viewer install``
(its tarball cached once per machine in ~/.cache/pacsnode). With
PACSNODE_SCREENSHOTS=1, screenshots of the main pages go to docs/screenshots/ (the
README shows them); otherwise into the test's temporary directory.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser import launch, skip_tour, wait_for_pixels
from conftest import (
    PYDICOM_FILES,
    RunningServer,
    ct_dataset,
    free_port,
    pydicom_data_dir,
    save,
    write_config,
)
from peers import dcmtk
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from pydicom import Dataset, dcmread
from pydicom.uid import EncapsulatedPDFStorage, RLELossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from test_routing import StoreScp

from pacsnode import ohif
from pacsnode.archive.users import hash_password
from pacsnode.web.roles import required_role

SCREENSHOTS = (
    Path(__file__).parent.parent / "docs" / "screenshots"
    if os.environ.get("PACSNODE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "pacsnode-screenshots"
)
PASSWORDS = {"admin": "admin-secret", "operator": "operator-secret", "viewer": "viewer-secret"}
CT_SLICES = 24


@dataclass
class Site:
    server: RunningServer
    storescp: StoreScp
    studies: dict[str, str]
    """Study Instance UIDs of what OHIF is to open, by kind."""
    uploads: list[Path]
    not_dicom: Path
    down_port: int
    """Where the remote AE DOWN is to be found once a test starts it."""

    def api(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.server.url, auth=(user, PASSWORDS[user]), timeout=30)


def _ct_series(folder: Path) -> tuple[str, list[Path]]:
    """A CT series with geometry, so that OHIF can stack it and reconstruct it (MPR)."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    z, y, x = np.mgrid[:CT_SLICES, :64, :64]
    volume = ((x - 32) ** 2 + (y - 32) ** 2 + (z * 2 - CT_SLICES) ** 2 < 500) * 1000 + 24
    paths = []
    for number in range(CT_SLICES):
        dataset = ct_dataset(
            study=study,
            series=series,
            rows=64,
            patient_name="PHANTOM^SPHERE",
            patient_id="UI-CT",
            StudyDescription="sphere phantom",
            SeriesDescription="axial 2.5 mm",
            SeriesNumber=1,
            InstanceNumber=number + 1,
            FrameOfReferenceUID=frame,
            ImagePositionPatient=[-22.4, -22.4, number * 2.5],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            PixelSpacing=[0.7, 0.7],
            SliceThickness=2.5,
            RescaleIntercept=-1024,
            RescaleSlope=1,
            WindowCenter=40,
            WindowWidth=400,
        )
        dataset.PixelData = volume[number].astype("<u2").tobytes()
        paths.append(save(dataset, folder / f"ct{number:03}.dcm"))
    return study, paths


def _pdf_document() -> Dataset:
    """An Encapsulated PDF of one page that says "pacsnode"."""
    text = b"BT /F1 24 Tf 20 100 Td (pacsnode) Tj ET"
    pdf = b"".join(
        [
            b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n",
            b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n",
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R",
            b"/Resources<</Font<</F1 5 0 R>>>>>>endobj\n",
            b"4 0 obj<</Length " + str(len(text)).encode() + b">>stream\n" + text,
            b"\nendstream endobj\n5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\n",
            b"trailer<</Root 1 0 R>>\n%%EOF\n",
        ]
    )
    dataset = ct_dataset(
        sop_class=EncapsulatedPDFStorage,
        patient_name="REPORT^PDF",
        patient_id="UI-PDF",
        modality="DOC",
        MIMETypeOfEncapsulatedDocument="application/pdf",
        DocumentTitle="report",
        BurnedInAnnotation="NO",
        EncapsulatedDocument=pdf + b"\0" * (len(pdf) % 2),
    )
    for pixel_keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(dataset, pixel_keyword)
    for pixel_keyword in ("PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(dataset, pixel_keyword)
    del dataset.PixelData
    return dataset


def _study_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pacsnode", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("ui")
    storescp = StoreScp(folder / "storescp").start()
    data = folder / "data"
    dicom_port, http_port, down_port = free_port(), free_port(), free_port()
    users = [f"{name}:{name}:{hash_password(pw, 1000)}" for name, pw in PASSWORDS.items()]
    config = write_config(
        folder / "pacsnode.toml",
        {
            "ae_title": "PACSNODE",
            "dicom_port": dicom_port,
            "http_port": http_port,
            "data_dir": str(data),
            "bind_address": "127.0.0.1",
            "workers": 1,
            "http_auth": "basic",
            "http_users": users,
            "job_max_attempts": 1,
            "job_retry_delay": 0.2,
        },
        [
            {"ae_title": "STORESCP", "host": "127.0.0.1", "port": storescp.port},
            {"ae_title": "DOWN", "host": "127.0.0.1", "port": down_port},
            {
                "ae_title": "SELF",
                "host": "127.0.0.1",
                "port": dicom_port,
                "offers": ["find", "get"],
            },
        ],
    )
    installed = _run("viewer", "install", "--config", str(config))
    assert installed.returncode == 0, installed.stderr
    sources = folder / "sources"
    sources.mkdir()
    ct_study, ct_paths = _ct_series(sources)
    j2k = pydicom_data_dir() / "693_J2KR.dcm"
    jpeg = PYDICOM_FILES / "test_files" / "SC_rgb_jpeg_dcmtk.dcm"
    jpeg_ls = pydicom_data_dir() / "emri_small_jpeg_ls_lossless.dcm"
    sr = PYDICOM_FILES / "test_files" / "reportsi.dcm"
    pdf = save(_pdf_document(), sources / "pdf.dcm")
    viewed = {"j2k": j2k, "jpeg": jpeg, "jpeg-ls-multiframe": jpeg_ls, "sr": sr, "pdf": pdf}
    many = [
        save(
            ct_dataset(patient_name=f"PAGER^P{n:02}", patient_id=f"PG{n:02}"), sources / f"p{n}.dcm"
        )
        for n in range(30)
    ]
    many.append(
        save(
            ct_dataset(
                patient_name="BIRTH^DAY",
                patient_id="UI-BD",
                PatientBirthDate="19700301",
                AccessionNumber="ACC-UI-77",
            ),
            sources / "birthday.dcm",
        )
    )
    imported = _run(
        "import", "--config", str(config), *map(str, [*ct_paths, *viewed.values(), *many])
    )
    assert imported.returncode == 0, imported.stderr
    uploads = [
        save(ct_dataset(patient_name="UPLOADED^ONE", patient_id="UP1"), folder / "up1.dcm"),
        save(ct_dataset(patient_name="UPLOADED^TWO", patient_id="UP2"), folder / "up2.dcm"),
    ]
    not_dicom = folder / "notes.txt"
    not_dicom.write_text("not a DICOM file\n")
    log = folder / "server.log"
    server = RunningServer(config, data, dicom_port, "PACSNODE", log, "", http_port).start()
    try:
        studies = {kind: _study_of(path) for kind, path in viewed.items()}
        studies |= {"ct": ct_study, "mpr": ct_study}
        yield Site(server, storescp, studies, uploads, not_dicom, down_port)
    finally:
        server.kill()
        storescp.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


def _logged_in(browser: Browser, site: Site, user: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    page.goto(site.server.url + "/")
    assert page.url.startswith(site.server.url + "/login"), page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(site.server.url + "/")
    page.close()
    return context


@pytest.fixture(scope="module")
def admin(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    context = _logged_in(browser, site, "admin")
    yield context
    context.close()


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def _csrf(page: Page) -> str:
    return str(page.get_attribute("body", "data-csrf"))


def test_login_search_and_study_page(browser: Browser, site: Site, admin: BrowserContext) -> None:
    url = site.server.url
    stranger = browser.new_context()
    page = stranger.new_page()
    page.goto(url + "/studies")
    assert page.url.startswith(url + "/login?next=")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert "wrong user name or password" in page.inner_text(".error")
    cookie = next(c for c in stranger.cookies() if c["name"] == "pacsnode_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    stranger.close()

    page = admin.new_page()
    page.goto(url + "/")
    assert page.inner_text("#count-studies") == "37"
    _shot(page, "dashboard")

    page.goto(url + "/studies")
    assert "37 studies" in page.inner_text("#study-total")
    _shot(page, "studies")
    assert page.locator("#study-table tbody tr").count() == 25
    page.click("#next-page")
    page.wait_for_selector("text=page 2 of 2")
    assert page.locator("#study-table tbody tr").count() == 12
    page.fill("input[name=name]", "pager^p0")
    page.select_option("select[name=sort]", "PatientName")
    page.wait_for_selector("text=10 studies")
    names = page.locator("#study-table tbody tr td:first-child").all_inner_texts()
    assert names == sorted(names) and names[0] == "PAGER, P00"
    page.fill("input[name=name]", "")
    page.fill("input[name=modality]", "OT")
    page.click("button[type=submit]")
    page.wait_for_url("**modality=OT**")
    assert page.inner_text("#study-total") == "1 study, page 1 of 1"
    assert "SC_rgb" not in page.inner_text("#study-table")  # the row is the OT study
    page.fill("input[name=modality]", "")
    page.fill("input[name=description]", "phantom")
    page.click("button[type=submit]")
    page.wait_for_url("**description=phantom**")
    assert page.inner_text("#study-total") == "1 study, page 1 of 1"
    assert "PHANTOM, SPHERE" in page.inner_text("#study-table")

    page.click("#study-table tbody a >> nth=0")
    page.wait_for_selector(".series img.thumb")
    page.wait_for_function(  # decoded as images: a width once loaded
        "[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth)"
    )
    widths = page.eval_on_selector_all("img.thumb", "images => images.map(i => i.naturalWidth)")
    assert widths == [128]
    assert f"{CT_SLICES} instances" in page.inner_text(".series .count")
    open_link = page.get_attribute("#open-viewer", "href")
    assert open_link == f"/viewer?StudyInstanceUIDs={site.studies['ct']}"
    page.click(".series summary")
    page.click(".instances-list a >> nth=0")
    page.wait_for_selector("#tag-tree")
    tree = page.inner_text("#tag-tree")
    assert "(0010,0010) PatientName PN PHANTOM^SPHERE" in tree
    assert "(0020,0032) ImagePositionPatient DS" in tree
    _shot(page, "study")
    page.close()


def test_upload_send_and_delete(site: Site, admin: BrowserContext) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/upload")
    page.set_input_files("#files", [*map(str, site.uploads), str(site.not_dicom)])
    page.wait_for_selector("text=2 of 3 files stored")
    results = page.locator("#upload-results tbody tr td:last-child").all_inner_texts()
    assert results[:2] == ["stored", "stored"]
    assert results[2] == "not stored (409): failure reason C000"
    with site.api() as api:
        found = api.get("/api/studies", params={"PatientName": "UPLOADED*"}).json()
    assert found["total"] == 2
    uploaded = found["items"][0]["StudyInstanceUID"]

    page.goto(f"{url}/studies/{uploaded}")
    page.select_option("#send-form select", "STORESCP")
    page.click("#send-form button")
    page.wait_for_selector("#study-message .ok")
    job = int(page.inner_text("#study-message").split("job ")[1].split(" ")[0])
    page.goto(url + "/jobs")
    page.wait_for_selector(f"#job-{job}[data-status=done]", timeout=20_000)
    assert len(list(site.storescp.directory.iterdir())) == 1

    page.goto(f"{url}/studies/{uploaded}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-study")
    page.wait_for_url(f"{url}/studies?deleted={uploaded}")
    with site.api() as api:
        assert api.get(f"/api/studies/{uploaded}").status_code == 404
    page.close()


def test_remote_echo_and_job_retry(site: Site, admin: BrowserContext) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/remotes")
    page.fill("#remote-form input[name=ae_title]", "ECHOSCP")
    page.fill("#remote-form input[name=host]", "127.0.0.1")
    page.fill("#remote-form input[name=port]", str(site.storescp.port))
    page.fill("#remote-form input[name=offers]", "echo, store")
    page.click("#remote-form button")
    page.wait_for_selector("#remote-ECHOSCP")
    assert "database" in page.inner_text("#remote-ECHOSCP")
    page.click("#remote-ECHOSCP button.echo")
    page.wait_for_selector("#remote-message p")
    assert "ECHOSCP: echo succeeded, status 0x0000" in page.inner_text("#remote-message")
    page.click("#remote-DOWN button.echo")
    page.wait_for_selector("#remote-message .error")
    _shot(page, "remotes")

    page.goto(url + "/remotes/SELF/query")
    page.fill("#query-form input[name=PatientID]", "UI-CT")
    page.click("#query-form button")
    page.wait_for_selector("#matches table")
    assert "1 study on SELF" in page.inner_text("#matches")
    assert "PHANTOM, SPHERE" in page.inner_text("#matches table")
    page.click("#matches button")
    page.wait_for_selector("#retrieve-message .ok")
    retrieve = int(page.inner_text("#retrieve-message").split("job ")[1].split(" ")[0])
    with site.api() as api:
        retrieved = _wait_job(api, retrieve, "done")
    assert retrieved["kind"] == "retrieve"
    assert retrieved["result"]["completed"] == CT_SLICES  # type: ignore[index]

    with site.api() as api:
        queued = api.post("/api/remote/DOWN/store", json={"study": site.studies["ct"]})
        assert queued.status_code == 202
        job = queued.json()["id"]
        failed = _wait_job(api, job, "failed")
    assert failed["last_error"]
    page.goto(url + "/jobs")
    page.wait_for_selector(f"#job-{job}[data-status=failed]")
    _shot(page, "jobs")
    later = StoreScp(site.storescp.directory.parent / "later", port=site.down_port).start()
    try:
        page.click(f"#job-{job} button.retry")
        page.wait_for_selector("#job-message .ok")
        page.wait_for_selector(f"#job-{job}[data-status=done]", timeout=30_000)
        assert len(list(later.directory.iterdir())) == CT_SLICES
    finally:
        later.stop()
    page.close()


def _wait_job(api: httpx.Client, job: int, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        found = api.get(f"/api/jobs/{job}").json()
        if found["status"] == status:
            return dict(found)
        assert time.monotonic() < deadline, f"job {job} is {found}"
        time.sleep(0.2)


def test_viewer_role_sees_and_may_do_no_more(browser: Browser, site: Site) -> None:
    url = site.server.url
    context = _logged_in(browser, site, "viewer")
    page = context.new_page()
    page.goto(f"{url}/studies/{site.studies['ct']}")
    assert page.locator("#open-viewer").count() == 1
    for hidden in ("#delete-study", "#delete-study-hard", "#send-form", "#export-box"):
        assert page.locator(hidden).count() == 0, hidden
    nav = page.inner_text("header nav")
    assert "Users" not in nav and "Audit" not in nav and "Upload" not in nav
    page.goto(url + "/remotes")
    assert page.locator("#remote-form").count() == 0
    assert page.locator("button.echo").count() == 0
    csrf = _csrf(page)
    for path in ("/users", "/audit"):
        assert page.request.get(url + path).status == 403, path
    for path in (
        f"/studies/{site.studies['ct']}/delete",
        f"/studies/{site.studies['ct']}/send",
        "/remotes",
        "/remotes/STORESCP/echo",
        "/jobs/1/retry",
        "/users",
        "/users/viewer/password",
        "/worklist",
        "/worklist/1",
        "/routes",
        f"/api/studies/{site.studies['ct']}/export",
    ):
        answer = page.request.post(url + path, headers={"X-CSRF-Token": csrf})
        assert answer.status == 403, path
        assert required_role("POST", path) in answer.text()
    stow = page.request.post(
        url + "/dicom-web/studies",
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/dicom"},
        data=site.uploads[0].read_bytes(),
    )
    assert stow.status == 403
    page.goto(url + "/studies")
    page.click("#logout")
    page.wait_for_url(url + "/login")
    page.goto(url + "/studies")
    assert page.url.startswith(url + "/login?next=")
    context.close()


def test_csrf_and_sessions(site: Site, admin: BrowserContext) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/remotes")
    without = page.request.post(url + "/remotes/STORESCP/echo")
    assert without.status == 403 and "CSRF" in without.text()
    forged = page.request.post(url + "/remotes/STORESCP/echo", headers={"X-CSRF-Token": "x"})
    assert forged.status == 403
    api = page.request.delete(f"{url}/api/studies/{site.studies['ct']}")
    assert api.status == 403  # the REST API too, when the session cookie is the credential
    with site.api() as client:
        assert client.get(f"/api/studies/{site.studies['ct']}").status_code == 200
    echo = page.request.post(url + "/remotes/STORESCP/echo", headers={"X-CSRF-Token": _csrf(page)})
    assert echo.status == 200 and "echo succeeded" in echo.text()
    page.close()


VIEWED = {
    "ct": ("", 1),
    "mpr": ("&hangingprotocolId=mpr", 3),
    "j2k": ("", 1),
    "jpeg": ("", 1),
    "jpeg-ls-multiframe": ("", 1),
    "sr": ("", 0),
    "pdf": ("", 0),
}
"""Each study OHIF opens: URL suffix, and how many canvases must draw pixels (SR shows
as text, PDF in the browser's own viewer)."""


@pytest.mark.parametrize("kind", VIEWED)
def test_ohif_opens_each_kind(site: Site, admin: BrowserContext, kind: str) -> None:
    study = site.studies[kind]
    suffix, canvases = VIEWED[kind]
    page = admin.new_page()
    answers: list[tuple[int, str]] = []
    page.on("response", lambda response: answers.append((response.status, response.url)))
    page.goto(f"{site.server.url}/viewer?StudyInstanceUIDs={study}{suffix}")
    if canvases:
        wait_for_pixels(page, canvases)
    elif kind == "sr":
        page.get_by_text("Document Title").first.wait_for()
    else:
        page.locator("iframe, object, embed").first.wait_for()
    assert page.evaluate("self.crossOriginIsolated") is True
    dicomweb = [(s, u) for s, u in answers if "/dicom-web/" in u or "/wado" in u]
    assert dicomweb and all(200 <= status < 300 for status, _url in dicomweb), dicomweb
    assert all(status < 400 for status, _url in answers), [a for a in answers if a[0] >= 400]
    if kind == "mpr":
        skip_tour(page)
        _shot(page, "viewer")
    page.close()


def test_viewer_files(site: Site) -> None:
    """The install: the pinned build without ort/ and source maps, served at /viewer with
    its SPA fallback, wasm type and isolation headers; app-config on our DICOMweb."""
    installed = ohif.installed(site.server.data_dir)
    assert installed is not None
    assert not (installed / "ort").exists()
    assert not list(installed.rglob("*.map"))
    config = (installed / "app-config.js").read_text()
    assert "routerBasename: '/viewer'" in config and "qidoRoot: '/dicom-web'" in config
    with site.api("viewer") as api:
        wasm = next(installed.glob("*.wasm")).name
        answer = api.get(f"/viewer/{wasm}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/wasm"
        assert answer.headers["cross-origin-embedder-policy"] == "require-corp"
        route = api.get("/viewer/viewer/dicomweb")
        assert route.status_code == 200 and 'window.PUBLIC_URL="/viewer/"' in route.text
        assert api.get("/viewer/no-such-bundle.js").status_code == 404
        entry = api.get("/viewer?StudyInstanceUIDs=1.2.3")
        assert entry.status_code == 307
        assert entry.headers["location"] == "/viewer/viewer?StudyInstanceUIDs=1.2.3"


def test_viewer_install_refuses_another_tarball(tmp_path: Path) -> None:
    bogus = tmp_path / "app.tgz"
    bogus.write_bytes(b"not the pinned tarball")
    refused = _run(
        "viewer", "install", "--data-dir", str(tmp_path / "data"), "--tarball", str(bogus)
    )
    assert refused.returncode == 2
    assert "does not have the pinned SHA-512" in refused.stderr
    assert not (tmp_path / "data" / "viewer" / f"ohif-{ohif.VERSION}").exists()
    assert json.dumps(ohif.INTEGRITY).startswith('"sha512-')


def _posted(page: Page, click: str, message: str) -> tuple[int, str]:
    """Press an action's button; the status of its POST and the message shown for it."""
    with page.expect_response(lambda answer: answer.request.method == "POST") as answer:
        page.click(click)
    page.wait_for_selector(f"{message} p")
    return answer.value.status, page.inner_text(message)


def _log_in(browser: Browser, site: Site, user: str, password: str) -> tuple[BrowserContext, bool]:
    """A browser that tried to log in, and whether it was let in."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.server.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    accepted = page.url == site.server.url + "/"
    page.close()
    return context, accepted


def _mwl(site: Site, folder: Path) -> list[Dataset]:
    """What a modality finds on the worklist for station CTUI01, by DCMTK's findscu."""
    out = folder / f"mwl-{time.monotonic_ns()}"
    out.mkdir()
    step = "ScheduledProcedureStepSequence[0]."
    keys = ["PatientName", "PatientID", "PatientSex", "AccessionNumber", "StudyInstanceUID"]
    keys += [f"{step}{key}" for key in ("Modality", "ScheduledProcedureStepID")]
    keys += [f"{step}ScheduledProcedureStepStartDate", f"{step}ScheduledProcedureStepStartTime"]
    keys += [f"{step}ScheduledStationAETitle=CTUI01"]
    found = dcmtk(
        "findscu", "-W", "-aet", "CTUI01", "-aec", "PACSNODE", "-X", "-od", str(out),
        *(arg for key in keys for arg in ("-k", key)),
        "127.0.0.1", str(site.server.port),
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def test_worklist_step_scheduled_changed_and_deleted(
    site: Site, admin: BrowserContext, tmp_path: Path
) -> None:
    url, form = site.server.url, "#worklist-form"
    page = admin.new_page()
    page.goto(url + "/worklist")
    typed = {
        "PatientName": "WORK^LIST",
        "PatientID": "WL-UI1",
        "PatientBirthDate": "1980-02-03",
        "AccessionNumber": "WL-ACC1",
        "Modality": "ct",
        "ScheduledStationAETitle": "CTUI01-IS-TOO-LONG",
        "ScheduledProcedureStepStartDate": "2026-11-24",
        "ScheduledProcedureStepStartTime": "10:30:00",
        "ScheduledProcedureStepID": "SPS-UI1",
        "ScheduledProcedureStepDescription": "chest",
    }
    for keyword, value in typed.items():
        page.fill(f"{form} [name={keyword}]", value)
    page.select_option(f"{form} [name=PatientSex]", "F")
    status, shown = _posted(page, f"{form} button[type=submit]", "#worklist-message")
    assert status == 400
    expected = (
        "ScheduledStationAETitle 'CTUI01-IS-TOO-LONG': must be an AE title (1 to 16 characters)"
    )
    assert shown == expected
    assert page.get_attribute("#worklist-message p", "role") == "alert"
    assert page.input_value(f"{form} [name=PatientName]") == "WORK^LIST"  # nothing lost
    page.fill(f"{form} [name=ScheduledStationAETitle]", "CTUI01")
    page.click(f"{form} button[type=submit]")
    row = page.locator("#worklist-table tbody tr", has_text="WL-ACC1")
    expect(row).to_have_count(1)
    _shot(page, "worklist")

    [found] = _mwl(site, tmp_path)
    [step] = found.ScheduledProcedureStepSequence
    assert (found.PatientName, found.PatientID, found.PatientSex) == ("WORK^LIST", "WL-UI1", "F")
    assert (step.Modality, step.ScheduledProcedureStepID) == ("CT", "SPS-UI1")
    assert step.ScheduledProcedureStepStartDate == "20261124"
    assert step.ScheduledProcedureStepStartTime == "103000"
    study = found.StudyInstanceUID

    row.locator("button.edit").click()
    page.wait_for_selector("#worklist-form-box h2 >> text=Change worklist item")
    assert page.input_value(f"{form} [name=ScheduledProcedureStepStartDate]") == "2026-11-24"
    assert page.input_value(f"{form} [name=ScheduledProcedureStepStartTime]") == "10:30:00"
    assert page.input_value(f"{form} [name=PatientSex]") == "F"
    page.fill(f"{form} [name=PatientName]", "WORK^LISTED")
    page.fill(f"{form} [name=Modality]", "MR")
    page.click(f"{form} button[type=submit]")
    expect(page.locator("#worklist-table tbody tr", has_text="WORK^LISTED")).to_have_count(1)
    [changed] = _mwl(site, tmp_path)
    assert changed.PatientName == "WORK^LISTED"
    assert changed.ScheduledProcedureStepSequence[0].Modality == "MR"
    assert changed.StudyInstanceUID == study  # the item changed, not a new one

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#worklist-table tbody tr", has_text="WL-ACC1").locator("button.danger").click()
    expect(page.locator("#worklist-table tbody tr", has_text="WL-ACC1")).to_have_count(0)
    assert _mwl(site, tmp_path) == []
    missing = page.request.post(url + "/worklist/999999/delete", headers=_token(page))
    assert (missing.status, "no worklist item 999999" in missing.text()) == (404, True)
    page.close()


def _token(page: Page) -> dict[str, str]:
    return {"X-CSRF-Token": _csrf(page)}


def test_passwords_changed_by_an_admin_and_by_their_user(
    browser: Browser, site: Site, admin: BrowserContext
) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/users")
    page.fill("#user-form [name=name]", "nurse")
    page.fill("#user-form [name=password]", "nurse-first-1")
    page.select_option("#user-form [name=role]", "operator")
    page.click("#user-form button")
    page.wait_for_selector("#user-nurse")
    page.fill("#user-nurse form.password [name=password]", "nurse-second-2")
    status, shown = _posted(page, "#user-nurse form.password button", "#user-message")
    assert (status, shown) == (200, "user nurse: password changed")
    page.goto(url + "/account")  # an admin of the config file changes it there
    assert "a user of the config file" in page.inner_text("main")
    assert page.locator("#password-form").count() == 0
    mine = page.request.post(
        url + "/account/password",
        headers=_token(page),
        form={"current_password": PASSWORDS["admin"], "new_password": "admin-other-1"},
    )
    assert mine.status == 409 and "http_users entry of the config file" in mine.text()
    page.close()

    refused, accepted = _log_in(browser, site, "nurse", "nurse-first-1")
    assert not accepted
    refused.close()
    nurse, accepted = _log_in(browser, site, "nurse", "nurse-second-2")
    assert accepted
    page = nurse.new_page()
    page.goto(url + "/account")
    page.fill("#password-form [name=current_password]", "not-my-password")
    page.fill("#password-form [name=new_password]", "nurse-third-3")
    status, shown = _posted(page, "#password-form button", "#account-message")
    assert (status, shown) == (403, "current_password: not your current password")
    short = page.request.post(
        url + "/account/password",
        headers=_token(page),
        form={"current_password": "nurse-second-2", "new_password": "short"},
    )
    assert short.status == 400 and "password must be at least 8 characters" in short.text()
    page.fill("#password-form [name=current_password]", "nurse-second-2")
    status, shown = _posted(page, "#password-form button", "#account-message")
    assert (status, shown) == (200, "your password is changed")
    page.close()
    nurse.close()
    for password, let_in in (("nurse-second-2", False), ("nurse-third-3", True)):
        context, accepted = _log_in(browser, site, "nurse", password)
        assert accepted is let_in, password
        context.close()


def test_remote_ae_edited(site: Site, admin: BrowserContext, tmp_path: Path) -> None:
    url = site.server.url
    scp = StoreScp(tmp_path / "edited").start()
    try:
        with site.api() as api:
            entry = {"ae_title": "EDITME", "host": "127.0.0.1", "port": free_port()}
            assert api.put("/api/remote/EDITME", json=entry).status_code in (200, 201)
        page = admin.new_page()
        page.goto(url + "/remotes")
        status, shown = _posted(page, "#remote-EDITME button.echo", "#remote-message")
        assert status == 502 and shown.startswith("EDITME: ")
        page.click("#remote-EDITME button.link")
        assert page.input_value("#remote-form [name=ae_title]") == "EDITME"
        page.fill("#remote-form [name=host]", "localhost")
        page.fill("#remote-form [name=port]", str(scp.port))
        page.click("#remote-form button")
        page.wait_for_selector(f"#remote-EDITME >> text={scp.port}")
        assert "localhost" in page.inner_text("#remote-EDITME")
        status, shown = _posted(page, "#remote-EDITME button.echo", "#remote-message")
        assert status == 200 and "EDITME: echo succeeded, status 0x0000" in shown
        with site.api() as api:
            stored = api.get("/api/remote/EDITME").json()
        assert (stored["host"], stored["port"], stored["source"]) == (
            "localhost",
            scp.port,
            "database",
        )
        bad = page.request.post(
            url + "/remotes",
            headers=_token(page),
            form={"ae_title": "EDITME", "host": "localhost", "port": "70000"},
        )
        assert bad.status == 400 and "port 70000 is not a number from 1 to 65535" in bad.text()
        page.close()
    finally:
        scp.stop()


def _wait_for_file(scp: StoreScp, uid: str) -> Path:
    deadline = time.monotonic() + 30
    while (found := scp.received(uid)) is None:
        assert time.monotonic() < deadline, f"{uid} never reached the storescp"
        time.sleep(0.1)
    return found


def _store(site: Site, calling_ae: str, *paths: Path) -> None:
    sent = dcmtk(
        "storescu", "-aet", calling_ae, "-aec", "PACSNODE",
        "127.0.0.1", str(site.server.port), *map(str, paths),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr


def _fill_rule(page: Page, name: str, calling_ae: str, **fields: str) -> None:
    form = "#route-form"
    page.fill(f"{form} [name=name]", name)
    page.select_option(f"{form} [name=destinations]", ["ROUTED"])
    page.fill(f"{form} [name=calling_ae]", calling_ae)
    for field, value in fields.items():
        page.fill(f"{form} [name={field}]", value)


def test_routing_rules_made_in_the_ui(site: Site, admin: BrowserContext, tmp_path: Path) -> None:
    """A rule with every field routes an instance to DCMTK's storescp; edited and
    removed; a rule waiting for stable studies holds a job the jobs page cancels; a rule
    asking for storage commitment shows its outcome on the commitment page."""
    url, form = site.server.url, "#route-form"
    scp = StoreScp(tmp_path / "routed").start()
    try:
        with site.api() as api:
            entry = {"ae_title": "ROUTED", "host": "127.0.0.1", "port": scp.port}
            assert api.put("/api/remote/ROUTED", json=entry).status_code in (200, 201)
        page = admin.new_page()
        page.goto(url + "/routes")
        _fill_rule(page, "ui-ct", "ROUTER1", modality="CT", match="StudyDate=2020*")
        page.select_option(f"{form} [name=transfer_syntax]", RLELossless)
        status, shown = _posted(page, f"{form} button[type=submit]", "#route-message")
        assert status == 400
        assert shown == (
            "route 'ui-ct': match StudyDate must be a date or date range (YYYYMMDD), not '2020*'"
        )
        page.fill(f"{form} [name=match]", "StudyDescription=*route me*\nStudyDate")
        status, shown = _posted(page, f"{form} button[type=submit]", "#route-message")
        assert (status, shown) == (400, "match line 2 'StudyDate': write Keyword=value")
        conditions = "StudyDescription=*route me*\nStudyDate=20200101-20201231"
        page.fill(f"{form} [name=match]", conditions)
        page.click(f"{form} button[type=submit]")
        row = page.locator("#route-table tr[data-name=ui-ct]")
        expect(row).to_have_count(1)
        assert "StudyDate=20200101-20201231" in row.inner_text()
        assert "RLE Lossless" in row.inner_text()
        _shot(page, "routing")
        with site.api() as api:
            [rule] = [r for r in api.get("/api/routes").json() if r["name"] == "ui-ct"]
        assert rule | {"source": "api"} == {
            "name": "ui-ct",
            "destinations": ["ROUTED"],
            "calling_ae": ["ROUTER1"],
            "called_ae": [],
            "modality": ["CT"],
            "sop_class": [],
            "match": {"StudyDate": "20200101-20201231", "StudyDescription": "*route me*"},
            "transfer_syntax": RLELossless,
            "allow_lossy": False,
            "commit": False,
            "wait_for_stable_study": 0.0,
            "deidentify": False,
            "deidentify_options": [],
            "source": "api",
        }
        _fill_rule(page, "ui-ct", "X")
        status, shown = _posted(page, f"{form} button[type=submit]", "#route-message")
        assert (status, shown) == (409, "a route named 'ui-ct' exists")

        routed = save(
            ct_dataset(patient_id="RT1", StudyDescription="please ROUTE ME", StudyDate="20200615"),
            tmp_path / "routed.dcm",
        )
        other = save(
            ct_dataset(patient_id="RT2", StudyDescription="please ROUTE ME", StudyDate="20190615"),
            tmp_path / "other.dcm",
        )
        _store(site, "ROUTER1", other, routed)
        arrived = dcmread(_wait_for_file(scp, str(dcmread(routed).SOPInstanceUID)))
        assert arrived.file_meta.TransferSyntaxUID == RLELossless
        assert scp.received(str(dcmread(other).SOPInstanceUID)) is None  # queued first if at all

        row.locator("button.edit").click()
        page.wait_for_selector("#route-form-box h2 >> text=Change rule ui-ct")
        assert "StudyDate=20200101-20201231\nStudyDescription=*route me*" in page.input_value(
            f"{form} [name=match]"
        )
        assert page.input_value(f"{form} [name=transfer_syntax]") == RLELossless
        page.fill(f"{form} [name=calling_ae]", "ROUTER2, ROUTER3")
        page.click(f"{form} button[type=submit]")
        expect(row.locator("td", has_text="ROUTER2, ROUTER3")).to_have_count(1)
        with site.api() as api:
            [rule] = [r for r in api.get("/api/routes").json() if r["name"] == "ui-ct"]
        assert rule["calling_ae"] == ["ROUTER2", "ROUTER3"]
        assert rule["transfer_syntax"] == RLELossless and rule["match"]["StudyDate"]

        _fill_rule(page, "ui-hold", "HOLDER", wait_for_stable_study="3600")
        page.click(f"{form} button[type=submit]")
        expect(page.locator("#route-table tr[data-name=ui-hold]")).to_have_count(1)
        _fill_rule(page, "ui-commit", "COMMITTER")
        page.check(f"{form} [name=commit]")
        page.click(f"{form} button[type=submit]")
        expect(page.locator("#route-table tr[data-name=ui-commit]")).to_have_count(1)
        held = save(ct_dataset(patient_id="RT3"), tmp_path / "held.dcm")
        committed = save(ct_dataset(patient_id="RT4"), tmp_path / "committed.dcm")
        _store(site, "HOLDER", held)
        _store(site, "COMMITTER", committed)
        with site.api() as api:
            jobs = api.get("/api/jobs", params={"limit": "20"}).json()
            [waiting] = [j for j in jobs if j["description"].startswith("route ui-hold:")]
            [commit] = [j for j in jobs if j["description"].startswith("route ui-commit:")]
            finished = _wait_job(api, commit["id"], "failed")
        assert waiting["status"] == "pending"
        page.goto(url + "/jobs")
        page.wait_for_selector(f"#job-{waiting['id']}[data-status=pending]")
        status, shown = _posted(page, f"#job-{waiting['id']} button.cancel", "#job-message")
        assert (status, shown.split(" · ")[0]) == (200, f"job {waiting['id']} cancelled")
        page.wait_for_selector(f"#job-{waiting['id']}[data-status=cancelled]")  # the poll
        again = page.request.post(f"{url}/jobs/{waiting['id']}/cancel", headers=_token(page))
        assert again.status == 409
        _wait_for_file(scp, str(dcmread(committed).SOPInstanceUID))  # sent, then refused
        page.goto(url + "/commitments")
        outcome = page.locator(
            "tr", has_text=f"route ui-commit: {dcmread(committed).SOPInstanceUID}"
        )
        assert "failed" in outcome.inner_text()
        assert str(finished["last_error"])[:40] in outcome.inner_text()

        page.goto(url + "/routes")
        for name in ("ui-ct", "ui-hold", "ui-commit"):
            page.once("dialog", lambda dialog: dialog.accept())
            page.click(f"#route-table tr[data-name={name}] button.danger")
            expect(page.locator(f"#route-table tr[data-name={name}]")).to_have_count(0)
        with site.api() as api:
            assert not [r for r in api.get("/api/routes").json() if r["name"].startswith("ui-")]
        page.close()
    finally:
        scp.stop()


def test_patients_and_study_search_by_birth_date_and_accession(
    site: Site, admin: BrowserContext
) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/patients")
    page.fill("input[name=name]", "PAGER*")
    page.click("form.search button")
    page.wait_for_url("**name=PAGER**")
    assert page.inner_text("#patient-total") == "30 patients, page 1 of 2"
    assert page.locator("#patient-table tbody tr").count() == 25
    page.click("#next-page")
    page.wait_for_url("**page=2**")
    assert page.locator("#patient-table tbody tr").count() == 5
    _shot(page, "patients")
    page.goto(url + "/patients")
    page.fill("input[name=birth_date]", "1970-03-01")
    page.click("form.search button")
    page.wait_for_url("**birth_date=1970-03-01**")
    assert page.inner_text("#patient-total").startswith("1 patient,")
    assert "BIRTH, DAY" in page.inner_text("#patient-table")
    assert "1970-03-01" in page.inner_text("#patient-table")
    page.click("#patient-table a")
    page.wait_for_url("**patient_id=UI-BD**")
    assert page.inner_text("#study-total") == "1 study, page 1 of 1"

    page.goto(url + "/studies")
    page.fill("input[name=birth_date]", "1970-03-01")
    page.click("#study-search button[type=submit]")
    page.wait_for_url("**birth_date=1970-03-01**")
    assert page.inner_text("#study-total") == "1 study, page 1 of 1"
    assert "BIRTH, DAY" in page.inner_text("#study-table")
    page.fill("input[name=birth_date]", "")
    page.fill("input[name=accession]", "ACC-UI-77")
    page.click("#study-search button[type=submit]")
    page.wait_for_url("**accession=ACC-UI-77**")
    assert page.inner_text("#study-total") == "1 study, page 1 of 1"
    assert "BIRTH, DAY" in page.inner_text("#study-table")
    answer = page.goto(url + "/studies?from=2026-13-01")
    assert answer is not None and answer.status == 400
    assert "StudyDate" in page.inner_text(".error") and "20261301" in page.inner_text(".error")
    page.close()


def test_study_downloads_zip_and_dicomdir_media(
    site: Site, admin: BrowserContext, tmp_path: Path
) -> None:
    study = site.studies["ct"]
    page = admin.new_page()
    page.goto(f"{site.server.url}/studies/{study}")
    with page.expect_download() as download:
        page.click("text=Download as stored (ZIP)")
    stored = tmp_path / "study.zip"
    download.value.save_as(stored)
    with zipfile.ZipFile(stored) as archive:
        names = [name for name in archive.namelist() if name != "DICOMDIR"]
        datasets = [dcmread(io.BytesIO(archive.read(name))) for name in names]
    assert {str(ds.StudyInstanceUID) for ds in datasets} == {study}
    assert sorted(int(ds.InstanceNumber) for ds in datasets) == list(range(1, CT_SLICES + 1))

    with page.expect_download() as download:
        page.click("text=Download DICOMDIR media (ZIP)")
    media = tmp_path / "media.zip"
    download.value.save_as(media)
    with zipfile.ZipFile(media) as archive:
        archive.extractall(tmp_path / "media")
    dump = dcmtk("dcmdump", str(tmp_path / "media" / "DICOMDIR"))
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.count("(0004,1430) CS [IMAGE]") == CT_SLICES
    assert "(0004,1430) CS [STUDY]" in dump.stdout
    directory = dcmread(tmp_path / "media" / "DICOMDIR")
    images = [r for r in directory.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    for record in images:
        referenced = tmp_path / "media" / Path(*record.ReferencedFileID)
        assert dcmread(referenced).SOPInstanceUID == record.ReferencedSOPInstanceUIDInFile
    page.close()


def test_audit_log_search(site: Site, admin: BrowserContext) -> None:
    url = site.server.url
    page = admin.new_page()
    page.goto(url + "/audit")
    page.fill("input[name=user]", "admin")
    page.fill("input[name=event]", "Login")
    page.click("form.search button")
    page.wait_for_url("**user=admin**")
    rows = page.locator("#audit-table tbody tr")
    assert rows.count() >= 1
    users = page.locator("#audit-table tbody tr td:nth-child(6)").all_inner_texts()
    assert set(users) == {"admin"}
    _shot(page, "audit")
    page.fill("input[name=user]", "no-such-user")
    page.click("form.search button")
    page.wait_for_url("**user=no-such-user**")
    assert page.inner_text("#audit-table tbody") == "Nothing found."
    answer = page.goto(url + "/audit?since=yesterday")
    assert answer is not None and answer.status == 400
    assert page.inner_text(".error") == "since: 'yesterday' is not an ISO 8601 date and time"
    page.close()


def test_api_token_made_in_the_ui_works_on_the_api(browser: Browser, site: Site) -> None:
    url = site.server.url
    with site.api() as api:
        robot = {"name": "robot", "password": "robot-secret-1", "role": "operator"}
        assert api.post("/api/users", json=robot).status_code == 201
    context, accepted = _log_in(browser, site, "robot", "robot-secret-1")
    assert accepted
    page = context.new_page()
    page.goto(url + "/tokens")
    bad = page.request.post(url + "/tokens", headers=_token(page), form={"expires_days": "soon"})
    assert bad.status == 400
    assert "expires_days 'soon' is not a number of days" in html.unescape(bad.text())
    page.fill("input[name=label]", "ci")
    page.fill("input[name=expires_days]", "30")
    page.click("form.grid button")
    secret = page.inner_text("pre.secret").strip()
    bearer = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=bearer, timeout=30) as client:
        assert client.get("/api/me").json() == {
            "name": "robot",
            "role": "operator",
            "authenticated": True,
        }
        assert client.get("/api/studies", params={"PatientID": "UI-CT"}).json()["total"] == 1
        page.goto(url + "/tokens")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("tr", has_text="ci").locator("button.danger").click()
        expect(page.locator("tr", has_text="ci")).to_have_count(0)
        assert client.get("/api/me").status_code == 401
    context.close()


def test_mpps_page_shows_what_a_modality_reported(site: Site, admin: BrowserContext) -> None:
    uid = generate_uid()
    modality = AE(ae_title="CTUI01")
    modality.add_requested_context(ModalityPerformedProcedureStep)
    association = modality.associate("127.0.0.1", site.server.port, ae_title="PACSNODE")
    assert association.is_established
    step = Dataset()
    step.PerformedProcedureStepStatus = "IN PROGRESS"
    step.PerformedProcedureStepID = "PPS-UI1"
    scheduled = Dataset()
    scheduled.StudyInstanceUID = generate_uid()
    step.ScheduledStepAttributesSequence = [scheduled]
    try:
        status, _reply = association.send_n_create(step, ModalityPerformedProcedureStep, uid)
    finally:
        association.release()
    assert status.Status == 0
    page = admin.new_page()
    page.goto(site.server.url + "/mpps")
    row = page.locator("tr", has_text=uid)
    assert "IN PROGRESS" in row.inner_text() and "CTUI01" in row.inner_text()
    page.close()


def test_dashboard_counts_disk_ingest_and_associations(
    site: Site, admin: BrowserContext, tmp_path: Path
) -> None:
    _store(site, "DASHBOARD", save(ct_dataset(patient_id="DB1"), tmp_path / "db.dcm"))
    page = admin.new_page()
    page.goto(site.server.url + "/")
    assert int(page.inner_text("#ingest-hour")) >= CT_SLICES + 1  # imported, and just now
    assert int(page.inner_text("#count-instances")) >= CT_SLICES
    assert re.fullmatch(
        r"[\d.]+ [kMGT]?B\s+free of [\d.]+ [kMGT]?B", page.inner_text("#disk").strip()
    )
    # The list is the audit journal's, which the audit thread writes a moment after
    # the association ends: the page is loaded again until it is there.
    entry = page.locator("#associations tbody tr", has_text="DASHBOARD")
    deadline = time.monotonic() + 10
    while entry.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        page.reload()
    assert entry.count() >= 1 and "stored" in entry.first.inner_text()
    page.close()


def _deid_study(folder: Path) -> list[Path]:
    """Two CT instances of one study with identity, an institution and a safe private
    attribute (SIEMENS MR HEADER B Value, PS3.15 Table E.3.10-1)."""
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in (1, 2):
        dataset = ct_dataset(
            study=study,
            series=series,
            patient_name="EXPORT^ME",
            patient_id="UI-DEID",
            InstanceNumber=number,
            InstitutionName="General Hospital",
            StudyDescription="knee of EXPORT",
        )
        dataset.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", "800")
        paths.append(save(dataset, folder / f"deid{number}.dcm"))
    return paths


def _dcmdump_clean(path: Path) -> Dataset:
    """``path`` read by dcmdump without a warning, and by pydicom."""
    dump = dcmtk("dcmdump", "-q", str(path))
    assert dump.returncode == 0 and not dump.stderr.strip(), f"{path.name}: {dump.stderr}"
    return dcmread(path)


def _deidentified(dataset: Dataset, originals: list[Dataset]) -> None:
    assert dataset.PatientIdentityRemoved == "YES"
    assert str(dataset.PatientName).startswith("ANONYMOUS^")
    assert dataset.PatientID.startswith("ANON") and dataset.PatientID != originals[0].PatientID
    assert "General Hospital" not in str(dataset.get("InstitutionName", ""))


def _exported_zip(page: Page, tmp_path: Path, name: str, options: list[str]) -> list[Dataset]:
    """Export the open study from its page as a ZIP with ``options``: its objects, each
    file of it read by dcmdump without a warning and by pydicom."""
    if not page.locator("#export-box[open]").count():
        page.click("#export-box summary")
    for box in page.locator("#export-form [name=options]").all():
        box.set_checked(box.get_attribute("value") in options)
    page.check("#export-form [name=to][value=zip]")
    with page.expect_download() as download:
        page.click("#export-form button[type=submit]")
    saved = tmp_path / f"{name}.zip"
    download.value.save_as(saved)
    expect(page.locator("#study-message .ok")).to_contain_text("downloaded, de-identified")
    with zipfile.ZipFile(saved) as archive:
        archive.extractall(tmp_path / name)
    files = [path for path in (tmp_path / name).rglob("*") if path.is_file()]
    datasets = [_dcmdump_clean(path) for path in files]  # the DICOMDIR too
    return [ds for path, ds in zip(files, datasets, strict=True) if path.name != "DICOMDIR"]


def test_study_exported_de_identified_from_its_page(
    site: Site, admin: BrowserContext, tmp_path: Path
) -> None:
    """The study page's export: a ZIP without and with Retain UIDs (and Retain Safe
    Private), and a send to a remote AE as a job; the REST route's CSRF check holds."""
    paths = _deid_study(tmp_path)
    originals = [dcmread(path) for path in paths]
    _store(site, "DEIDSRC", *paths)
    study = str(originals[0].StudyInstanceUID)
    sops = {str(ds.SOPInstanceUID) for ds in originals}
    scp = StoreScp(tmp_path / "research").start()
    try:
        with site.api() as api:
            entry = {"ae_title": "RESEARCH", "host": "127.0.0.1", "port": scp.port}
            assert api.put("/api/remote/RESEARCH", json=entry).status_code in (200, 201)
        page = admin.new_page()
        page.goto(f"{site.server.url}/studies/{study}")

        plain = _exported_zip(page, tmp_path, "plain", [])
        assert len(plain) == 2
        for dataset in plain:
            _deidentified(dataset, originals)
            assert str(dataset.SOPInstanceUID) not in sops
            assert dataset.StudyInstanceUID != study
            assert 0x0019100C not in dataset  # private: gone without Retain Safe Private
        assert len({ds.StudyInstanceUID for ds in plain}) == 1
        assert {ds.PatientID for ds in plain} == {plain[0].PatientID}

        kept = _exported_zip(page, tmp_path, "kept", ["retain-uids", "retain-safe-private"])
        assert {str(ds.SOPInstanceUID) for ds in kept} == sops
        for dataset in kept:
            _deidentified(dataset, originals)
            assert dataset.StudyInstanceUID == study
            assert dataset.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "800"
            methods = {code.CodeValue for code in dataset.DeidentificationMethodCodeSequence}
            assert methods == {"113100", "113110", "113111"}
        _shot(page, "export")

        page.check("#export-form [name=options][value=retain-uids]")
        page.check("#export-form [name=to][value=remote]")
        page.select_option("#export-form [name=remote]", "RESEARCH")
        page.click("#export-form button[type=submit]")
        expect(page.locator("#study-message .ok")).to_contain_text("de-identified")
        job = int(page.inner_text("#study-message").split("job ")[1].split(" ")[0])
        with site.api() as api:
            assert _wait_job(api, job, "done")["kind"] == "store"
        sent = [_dcmdump_clean(path) for path in scp.directory.iterdir()]
        assert {str(ds.SOPInstanceUID) for ds in sent} == sops
        for dataset in sent:
            _deidentified(dataset, originals)

        export = f"{site.server.url}/api/studies/{study}/export"
        forged = page.request.post(export, data={"to": "zip"})
        assert forged.status == 403 and "CSRF" in forged.text()
        page.close()
    finally:
        scp.stop()


def test_routing_rule_made_in_the_ui_sends_de_identified_copies(
    site: Site, admin: BrowserContext, tmp_path: Path
) -> None:
    url, form = site.server.url, "#route-form"
    scp = StoreScp(tmp_path / "deid-routed").start()
    try:
        with site.api() as api:
            entry = {"ae_title": "DEIDROUTE", "host": "127.0.0.1", "port": scp.port}
            assert api.put("/api/remote/DEIDROUTE", json=entry).status_code in (200, 201)
        page = admin.new_page()
        page.goto(url + "/routes")
        page.fill(f"{form} [name=name]", "ui-deid")
        page.select_option(f"{form} [name=destinations]", ["DEIDROUTE"])
        page.fill(f"{form} [name=calling_ae]", "DEIDMOD")
        page.check(f"{form} [name=deidentify_options][value=clean-descriptors]")
        status, shown = _posted(page, f"{form} button[type=submit]", "#route-message")
        refused = "route 'ui-deid': deidentify_options need deidentify = true"
        assert (status, shown) == (400, refused)
        page.check(f"{form} [name=deidentify]")
        page.click(f"{form} button[type=submit]")
        row = page.locator("#route-table tr[data-name=ui-deid]")
        expect(row.locator("td.deidentify")).to_have_text("yes: clean-descriptors")
        with site.api() as api:
            [rule] = [r for r in api.get("/api/routes").json() if r["name"] == "ui-deid"]
        assert (rule["deidentify"], rule["deidentify_options"]) == (True, ["clean-descriptors"])

        source = ct_dataset(
            patient_name="ROUTED^DEID", patient_id="UI-RDEID", StudyDescription="ankle of ROUTED"
        )
        _store(site, "DEIDMOD", save(source, tmp_path / "routed.dcm"))
        _wait_for_file(scp, "")  # any: the copy has its own SOP Instance UID
        with site.api() as api:
            jobs = api.get("/api/jobs", params={"limit": "20"}).json()
            [job] = [j for j in jobs if j["description"].startswith("route ui-deid:")]
            _wait_job(api, job["id"], "done")  # answered: storescp has written it whole
        [path] = list(scp.directory.iterdir())
        routed = _dcmdump_clean(path)
        _deidentified(routed, [source])
        assert routed.SOPInstanceUID != source.SOPInstanceUID
        assert routed.StudyDescription == "ankle of"  # cleaned of the patient's name
        assert "Clean Descriptors Option" in routed.DeidentificationMethod

        row.locator("button.edit").click()
        page.wait_for_selector("#route-form-box h2 >> text=Change rule ui-deid")
        assert page.is_checked(f"{form} [name=deidentify]")
        assert page.is_checked(f"{form} [name=deidentify_options][value=clean-descriptors]")
        assert not page.is_checked(f"{form} [name=deidentify_options][value=retain-uids]")
        page.goto(url + "/routes")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#route-table tr[data-name=ui-deid] button.danger")
        expect(page.locator("#route-table tr[data-name=ui-deid]")).to_have_count(0)
        page.close()
    finally:
        scp.stop()


def test_the_conformance_statement_page_is_the_apis(browser: Browser, site: Site) -> None:
    """A viewer reads the node's conformance statement in the UI: the same sections
    and the same storage SOP classes as the statement the API makes."""
    context = _logged_in(browser, site, "viewer")
    page = context.new_page()
    answer = page.goto(site.server.url + "/conformance")
    assert answer is not None and answer.status == 200
    with site.api() as api:
        made = api.get("/api/conformance").json()
    headings = page.locator("article.conformance h2").all_inner_texts()
    assert headings[:3] == [
        f"Conformance Statement Overview: pacsnode {made['version']}",
        "1 Introduction",
        "2 Networking",
    ]
    annex = page.locator("article.conformance section", has_text="Annex A: Storage SOP Classes")
    shown = annex.last.locator("tbody td:nth-child(2)").all_inner_texts()
    assert shown == [entry["uid"] for entry in made["sop_class_sets"]["storage"]]
    assert page.locator("nav a[href='/conformance']").count() == 1
    context.close()
