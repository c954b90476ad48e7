"""Rendered and thumbnail resources and WADO-URI against a real server.

Images go in over DIMSE; pictures come out over HTTP, read by dicomweb-client where it
has a call for them and by httpx otherwise, and are checked pixel by pixel against
the windowing formula applied to what pydicom decodes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import RunningServer, ct_dataset, free_port, stored_path, write_config
from dicomweb_client.api import DICOMwebClient
from peers import send_datasets, send_files
from PIL import Image
from pydicom import Dataset, dcmread
from test_rendering import linear, sample

CT_SMALL = sample("CT_small.dcm")
MULTIFRAME = sample("emri_small_jpeg_2k_lossless.dcm")  # 10 frames, 64 x 64
STUDY = "1.2.826.0.1.3680043.8.498.200"
IMAGES = f"{STUDY}.1"
REPORTS = f"{STUDY}.2"
REPORT = f"{REPORTS}.1"
REPORT_ONLY_STUDY = "1.2.826.0.1.3680043.8.498.201"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
PNG = {"accept": "image/png"}


def report(study: str, series: str, instance: str) -> Dataset:
    """An object without pixels: nothing to render."""
    ds = ct_dataset(study=study, series=series, instance=instance, modality="SR")
    ds.SOPClassUID = BASIC_TEXT_SR
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelData"):
        delattr(ds, keyword)
    for keyword in ("PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(ds, keyword)
    return ds


def flat_image(number: int) -> Dataset:
    """A 16 x 16 CT whose every pixel is ``100 * number`` HU, so a picture tells which
    instance it shows."""
    level = (100 * number).to_bytes(2, "little")
    return ct_dataset(
        study=STUDY,
        series=IMAGES,
        instance=f"{IMAGES}.{number}",
        InstanceNumber=number,
        SeriesNumber=1,
        PixelData=level * 16 * 16,
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every test here: they only read."""
    root = tmp_path_factory.mktemp("rendered")
    dicom_port, http_port = free_port(), free_port()
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": dicom_port,
        "http_port": http_port,
        "data_dir": str(root / "data"),
        "bind_address": "127.0.0.1",
    }
    server = RunningServer(
        write_config(root / "server.toml", settings, []),
        root / "data",
        dicom_port,
        "PACSNODE",
        root / "server.log",
        f"sqlite:///{(root / 'data' / 'index.sqlite').resolve()}",
        http_port,
    ).start()
    try:
        statuses = send_files(server.port, [CT_SMALL, MULTIFRAME])
        assert all(s is not None and s.Status == 0 for s in statuses.values())
        objects = [flat_image(n) for n in (1, 2, 3)] + [
            report(STUDY, REPORTS, REPORT),
            report(REPORT_ONLY_STUDY, f"{REPORT_ONLY_STUDY}.1", f"{REPORT_ONLY_STUDY}.1.1"),
        ]
        assert send_datasets(server.port, objects) == [0] * 5
        yield server
    finally:
        server.kill()


def uids(path: Path) -> tuple[str, str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def dicomweb(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/dicom-web", timeout=30)


def picture(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


def windowed_ct(center: float = 40, width: float = 400) -> np.ndarray:
    ds = dcmread(CT_SMALL)
    return linear(
        ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), center, width
    )


def frame(number: int, center: float = 600, width: float = 1200) -> np.ndarray:
    return linear(dcmread(MULTIFRAME).pixel_array[number - 1].astype(np.float64), center, width)


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related response, with their headers."""
    assert response.status_code == 200, response.text
    boundary = b"--" + response.headers["content-type"].split("boundary=")[1].encode()
    found = []
    for chunk in response.content.split(boundary)[1:-1]:
        head, _, body = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n"))
        found.append((headers, body[:-2]))
    return found


# Rendered resources -----------------------------------------------------------


def test_instance_rendered_is_the_windowed_image(loaded: RunningServer) -> None:
    client = DICOMwebClient(url=f"{loaded.url}/dicom-web")
    body = client.retrieve_instance_rendered(
        *uids(CT_SMALL), media_types=("image/png",), params={"window": "40,400,linear"}
    )
    assert np.array_equal(picture(body), windowed_ct())
    path = "/studies/{}/series/{}/instances/{}/rendered".format(*uids(CT_SMALL))
    with dicomweb(loaded) as http:
        default = http.get(path)
        assert default.headers["content-type"] == "image/jpeg"
        assert picture(default.content).shape == (128, 128)
        gif = http.get(path, params={"accept": "image/gif"}, headers={"Accept": "image/png"})
        assert gif.headers["content-type"] == "image/gif"
        region = {"viewport": "64,64,32,32,64,64", "window": "40,400", **PNG}
        scaled = http.get(path, params=region)
        assert np.array_equal(picture(scaled.content), windowed_ct(40, 400)[32:96, 32:96])


def test_series_and_study_rendered_are_the_images_they_hold(loaded: RunningServer) -> None:
    """The report series has no picture and is left out of the study."""
    client = DICOMwebClient(url=f"{loaded.url}/dicom-web")
    raw = client.retrieve_series_rendered(STUDY, IMAGES, media_types=("image/jpeg",))
    assert raw.count(b"Content-Type: image/jpeg") == 3
    headers = {"Accept": 'multipart/related; type="image/png"'}
    with dicomweb(loaded) as http:
        study = http.get(
            f"/studies/{STUDY}/rendered", params={"window": "200,400"}, headers=headers
        )
    assert study.headers["content-type"].startswith('multipart/related; type="image/png"')
    found = parts(study)
    assert [part.get("Content-Type") for part, _ in found] == ["image/png"] * 3
    for number, (part, body) in enumerate(found, start=1):
        assert part["Content-Location"].endswith(f"/instances/{IMAGES}.{number}/rendered")
        expected = linear(np.array([100.0 * number]), 200, 400)[0]
        assert np.all(picture(body) == expected)


def test_rendered_frames(loaded: RunningServer) -> None:
    client = DICOMwebClient(url=f"{loaded.url}/dicom-web")
    png = ("image/png",)
    seventh = client.retrieve_instance_frames_rendered(
        *uids(MULTIFRAME), frame_numbers=[7], media_types=png, params={"window": "600,1200"}
    )
    assert np.array_equal(picture(seventh), frame(7))
    path = "/studies/{}/series/{}/instances/{}/frames".format(*uids(MULTIFRAME))
    with dicomweb(loaded) as http:
        two = parts(http.get(f"{path}/3,1/rendered", params={"window": "600,1200", **PNG}))
        assert len(two) == 2
        assert np.array_equal(picture(two[0][1]), frame(3))
        assert np.array_equal(picture(two[1][1]), frame(1))
        assert http.get(f"{path}/11/rendered").status_code == 404
        assert http.get(f"{path}/0/rendered").status_code == 400
        assert http.get(f"{path}/one/rendered").status_code == 400


def test_thumbnails(loaded: RunningServer) -> None:
    instance = "/studies/{}/series/{}/instances/{}".format(*uids(MULTIFRAME))
    with dicomweb(loaded) as http:
        study = http.get(f"/studies/{STUDY}/thumbnail", params={"window": "200,400", **PNG})
        assert study.headers["content-type"] == "image/png"
        assert picture(study.content).shape == (128, 128)
        level = int(linear(np.array([200.0]), 200, 400)[0])  # instance 2 of 3, enlarged
        assert np.abs(picture(study.content).astype(int) - level).max() <= 1
        middle = http.get(f"{instance}/thumbnail", params={"viewport": "32,32", **PNG})
        assert picture(middle.content).shape == (32, 32)
        default = http.get(f"{instance}/thumbnail")
        assert default.headers["content-type"] == "image/jpeg"
        third = {"viewport": "64,64", "window": "600,1200", **PNG}
        assert np.array_equal(
            picture(http.get(f"{instance}/frames/3/thumbnail", params=third).content), frame(3)
        )
        assert http.get(f"/studies/{REPORT_ONLY_STUDY}/thumbnail").status_code == 406


@pytest.mark.parametrize(
    ("query", "status", "named"),
    [
        ({"window": "wide"}, 400, "window"),
        ({"window": "40,0,linear"}, 400, "window"),
        ({"window": "40,400,cubic"}, 400, "window"),
        ({"viewport": "10"}, 400, "viewport"),
        ({"viewport": "0,10"}, 400, "viewport"),
        ({"viewport": "10,10,a,,,"}, 400, "viewport"),
        ({"viewport": "10,10,500,500,10,10"}, 400, "region"),
        ({"quality": "500"}, 400, "quality"),
        ({"quality": "best"}, 400, "quality"),
        ({"accept": "application/pdf"}, 406, "image/jpeg"),
    ],
)
def test_rendered_parameters_that_are_wrong(
    loaded: RunningServer, query: dict[str, str], status: int, named: str
) -> None:
    path = "/studies/{}/series/{}/instances/{}/rendered".format(*uids(CT_SMALL))
    with dicomweb(loaded) as http:
        answer = http.get(path, params=query)
    assert answer.status_code == status
    assert named in answer.text


def test_rendered_of_what_is_missing_or_not_an_image(loaded: RunningServer) -> None:
    study, series, _ = uids(CT_SMALL)
    with dicomweb(loaded) as http:
        assert http.get("/studies/1.2.3.4/rendered").status_code == 404
        missing = f"/studies/{study}/series/{series}/instances/1.2.3/rendered"
        assert http.get(missing).status_code == 404
        report_path = f"/studies/{STUDY}/series/{REPORTS}/instances/{REPORT}/rendered"
        assert http.get(report_path).status_code == 406
        assert http.get(f"/studies/{REPORT_ONLY_STUDY}/rendered").status_code == 406
        wrong_type = http.get(f"/studies/{STUDY}/rendered", headers={"Accept": "application/dicom"})
        assert wrong_type.status_code == 406


# WADO-URI ---------------------------------------------------------------------


def wado(server: RunningServer, path: Path | tuple[str, str, str], **params: str) -> httpx.Response:
    study, series, instance = uids(path) if isinstance(path, Path) else path
    query = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": instance}
    return httpx.get(f"{server.url}/wado", params={**query, **params}, timeout=30)


def test_wado_uri_pictures(loaded: RunningServer) -> None:
    default = wado(loaded, CT_SMALL)
    assert default.status_code == 200 and default.headers["content-type"] == "image/jpeg"
    window = {"contentType": "image/png", "windowCenter": "40", "windowWidth": "400"}
    assert np.array_equal(picture(wado(loaded, CT_SMALL, **window).content), windowed_ct())
    assert picture(wado(loaded, CT_SMALL, rows="64").content).shape == (64, 64)
    assert picture(wado(loaded, CT_SMALL, rows="64", columns="32").content).shape == (32, 32)
    region = wado(loaded, CT_SMALL, region="0.25,0.25,0.75,0.75", **window)
    assert np.array_equal(picture(region.content), windowed_ct()[32:96, 32:96])
    low = wado(loaded, CT_SMALL, imageQuality="5").content
    assert len(low) < len(wado(loaded, CT_SMALL, imageQuality="95").content)
    frame_window = {"contentType": "image/png", "windowCenter": "600", "windowWidth": "1200"}
    seventh = wado(loaded, MULTIFRAME, frameNumber="7", **frame_window)
    assert np.array_equal(picture(seventh.content), frame(7))
    listed = wado(loaded, CT_SMALL, contentType="text/html,image/gif")
    assert listed.headers["content-type"] == "image/gif"


def test_wado_uri_dicom(loaded: RunningServer) -> None:
    """Explicit VR Little Endian unless asked otherwise; the stored syntax gives the
    stored file."""
    original = dcmread(MULTIFRAME)
    multiframe = wado(loaded, MULTIFRAME)  # a multi-frame image defaults to DICOM
    assert multiframe.headers["content-type"] == "application/dicom"
    ds = dcmread(io.BytesIO(multiframe.content))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(ds.pixel_array, original.pixel_array)
    dicom = {"contentType": "application/dicom"}
    stored = wado(loaded, MULTIFRAME, transferSyntax=original.file_meta.TransferSyntaxUID, **dicom)
    assert stored.content == stored_path(loaded, original.SOPInstanceUID).read_bytes()
    lossy = wado(loaded, MULTIFRAME, transferSyntax="1.2.840.10008.1.2.4.50", **dicom)
    assert lossy.status_code == 406
    not_a_uid = wado(loaded, MULTIFRAME, transferSyntax="x", **dicom)
    assert not_a_uid.status_code == 400 and "transferSyntax" in not_a_uid.text
    sr = (STUDY, REPORTS, REPORT)
    for content_type in ("", "image/jpeg,application/dicom"):
        answer = wado(loaded, sr, contentType=content_type)
        assert answer.headers["content-type"] == "application/dicom"
        assert dcmread(io.BytesIO(answer.content)).SOPInstanceUID == REPORT


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"requestType": "WADO-RS"}, 400, "requestType"),
        ({"objectUID": ""}, 400, "objectUID"),
        ({"anonymize": "yes"}, 400, "anonymize"),
        ({"objectUID": "1.2.3"}, 404, "not found"),
        ({"seriesUID": "1.2.3"}, 404, "not found"),
        ({"contentType": "text/html"}, 406, "text/html"),
        ({"windowCenter": "40"}, 400, "windowWidth"),
        ({"windowCenter": "40", "windowWidth": "0"}, 400, "windowWidth"),
        ({"rows": "0"}, 400, "rows"),
        ({"region": "0.5,0.5,0.2,0.9"}, 400, "region"),
        ({"imageQuality": "0"}, 400, "imageQuality"),
        ({"frameNumber": "2"}, 400, "frameNumber"),
    ],
)
def test_wado_uri_requests_that_are_wrong(
    loaded: RunningServer, params: dict[str, str], status: int, named: str
) -> None:
    answer = wado(loaded, CT_SMALL, **params)
    assert answer.status_code == status
    assert named in answer.text
