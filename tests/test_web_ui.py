"""The web UI and the OHIF viewer in Debian's Chromium, against a real server.

One server (HTTP Basic, three users), one browser and one OHIF install serve the whole
module; each test walks through a page the way an administrator would and checks
what the archive did. The viewer is installed with the real ``pacsnode viewer install``
(its tarball cached once per machine in ~/.cache/pacsnode). Screenshots of the main
pages go to docs/screenshots/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from pydicom import Dataset
from pydicom.uid import EncapsulatedPDFStorage, generate_uid
from test_routing import StoreScp

from pacsnode import ohif
from pacsnode.archive.users import hash_password
from pacsnode.web.roles import required_role

SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
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
    from pydicom import dcmread

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
    assert page.inner_text("#count-studies") == "36"
    _shot(page, "dashboard")

    page.goto(url + "/studies")
    assert "36 studies" in page.inner_text("#study-total")
    _shot(page, "studies")
    assert page.locator("#study-table tbody tr").count() == 25
    page.click("#next-page")
    page.wait_for_selector("text=page 2 of 2")
    assert page.locator("#study-table tbody tr").count() == 11
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
    for hidden in ("#delete-study", "#delete-study-hard", "#send-form"):
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
