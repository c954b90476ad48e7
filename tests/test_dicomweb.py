"""QIDO-RS and WADO-RS against a real server, with dicomweb-client as the viewer.

The data goes in over DIMSE, as a modality would send it, and comes out over
DICOMweb; QIDO answers are compared with C-FIND answers to the same query.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from conftest import RunningServer, ServerFactory, ct_dataset, free_port, stored_path, write_config
from dicomweb_client.api import DICOMwebClient
from peers import dcmtk, send_datasets, send_files
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from test_find_scp import find

from pacsnode.archive.schema import instance_metadata

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
JPEG2000 = Path(get_testdata_file("JPEG2000.dcm"))  # lossy J2K
MULTIFRAME = Path(get_testdata_file("emri_small.dcm"))  # 10 frames, uncompressed
RLE_RGB = Path(get_testdata_file("SC_rgb_rle.dcm"))  # lossless, colour


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the read-only tests: real files plus a few generated studies."""
    root = tmp_path_factory.mktemp("dicomweb")
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": free_port(),
        "http_port": free_port(),
        "data_dir": str(root / "data"),
        "bind_address": "127.0.0.1",
        "cors_origins": ["https://viewer.example"],
    }
    config = write_config(root / "server.toml", settings, [])
    server = RunningServer(
        config,
        root / "data",
        settings["dicom_port"],
        "PACSNODE",
        root / "server.log",
        f"sqlite:///{(root / 'data' / 'index.sqlite').resolve()}",
        settings["http_port"],
    ).start()
    try:
        statuses = send_files(server.port, [CT_SMALL, JPEG2000, MULTIFRAME, RLE_RGB])
        assert all(s is not None and s.Status == 0 for s in statuses.values())
        study = "1.2.826.0.1.3680043.8.498.100"
        generated = [
            ct_dataset(
                study=study,
                series=f"{study}.{series}",
                instance=f"{study}.{series}.{number}",
                patient_name="Müller^Anna",
                patient_id="QIDO1",
                modality=modality,
                SeriesNumber=series,
                InstanceNumber=number,
                StudyDescription="Thorax",
            )
            for series, modality in ((1, "CT"), (2, "SR"))
            for number in (1, 2, 3)
        ]
        others = [
            ct_dataset(patient_name=f"Person{n}^Test", patient_id=f"P{n}", AccessionNumber=f"X{n}")
            for n in range(5)
        ]
        assert send_datasets(server.port, generated + others) == [0] * 11
        yield server
    finally:
        server.kill()


def client(server: RunningServer) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.url}/dicom-web")


def http(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/dicom-web", timeout=30)


def values(answer: dict, keyword_tag: str) -> list:
    return answer.get(keyword_tag, {}).get("Value", [])


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related response, each with its headers as sent."""
    assert response.status_code == 200, response.text
    boundary = response.headers["content-type"].split("boundary=")[1].encode()
    body = response.content
    assert body.endswith(b"--" + boundary + b"--\r\n")
    found = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        found.append((headers, payload[:-2]))
    return found


def uid_of(answer: dict, tag: str) -> str:
    return str(values(answer, tag)[0])


# QIDO-RS --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qido", "cfind"),
    [
        ({"PatientName": "müller*"}, {"PatientName": "müller*"}),
        ({"PatientName": "*erson*"}, {"PatientName": "*erson*"}),
        ({"00100020": "P1"}, {"PatientID": "P1"}),
        ({"StudyDate": "20260101-20260131"}, {"StudyDate": "20260101-20260131"}),
        ({"ModalitiesInStudy": "SR"}, {"ModalitiesInStudy": "SR"}),
        ({"AccessionNumber": "x?"}, {"AccessionNumber": "x?"}),
    ],
)
def test_qido_finds_what_c_find_finds(
    loaded: RunningServer, qido: dict[str, str], cfind: dict[str, str]
) -> None:
    answers = http(loaded).get("/studies", params=qido).json()
    matches, final, _ = find(
        loaded.port,
        StudyRootQueryRetrieveInformationModelFind,
        "STUDY",
        charset="ISO_IR 192",
        **(
            {"StudyInstanceUID": "", "PatientName": "", "NumberOfStudyRelatedInstances": ""} | cfind
        ),
    )
    assert final == 0
    assert matches, "the query should match something"
    assert {uid_of(a, "0020000D") for a in answers} == {str(m.StudyInstanceUID) for m in matches}
    by_uid = {uid_of(a, "0020000D"): a for a in answers}
    for match in matches:
        answer = by_uid[str(match.StudyInstanceUID)]
        assert values(answer, "00100010")[0]["Alphabetic"] == str(match.PatientName)
        assert values(answer, "00201208") == [int(match.NumberOfStudyRelatedInstances)]


def test_study_answer_holds_defaults_and_computed_attributes(loaded: RunningServer) -> None:
    [answer] = http(loaded).get("/studies", params={"PatientID": "QIDO1"}).json()
    study = "1.2.826.0.1.3680043.8.498.100"
    assert uid_of(answer, "0020000D") == study
    assert values(answer, "00080061") == ["CT", "SR"]  # Modalities in Study
    assert values(answer, "00201206") == [2]  # Number of Study Related Series
    assert values(answer, "00201208") == [6]  # Number of Study Related Instances
    assert values(answer, "00081190") == [f"{loaded.url}/dicom-web/studies/{study}"]
    assert values(answer, "00080056") == ["ONLINE"]
    assert answer["00080050"] == {"vr": "SH", "Value": ["ACC001"]}
    assert "00081030" not in answer  # Study Description: not a default, not asked for


def test_includefield_and_levels(loaded: RunningServer) -> None:
    web = http(loaded)
    study = "1.2.826.0.1.3680043.8.498.100"
    [answer] = web.get(
        "/studies", params={"PatientID": "QIDO1", "includefield": "StudyDescription,00100030"}
    ).json()
    assert values(answer, "00081030") == ["Thorax"]
    assert answer["00100030"] == {"vr": "DA"}  # asked for, known to be empty
    every = web.get("/studies", params={"PatientID": "QIDO1", "includefield": "all"}).json()[0]
    assert "00081030" in every and "00100040" in every
    series = web.get(f"/studies/{study}/series").json()
    assert [values(s, "00200011") for s in series] == [[1], [2]]
    assert [values(s, "00201209") for s in series] == [[3], [3]]
    assert "00100010" not in series[0]  # no study defaults: the path fixes the study
    sr = web.get("/series", params={"Modality": "SR"}).json()
    assert [uid_of(s, "0020000D") for s in sr] == [study]  # study defaults when not fixed
    instances = web.get(f"/studies/{study}/series/{study}.2/instances").json()
    assert [uid_of(i, "00080018") for i in instances] == [f"{study}.2.{n}" for n in (1, 2, 3)]
    retrieve = values(instances[0], "00081190")[0]
    assert retrieve.endswith(f"/studies/{study}/series/{study}.2/instances/{study}.2.1")
    assert web.get("/instances", params={"SOPInstanceUID": f"{study}.1.2"}).json()[0]


def test_limit_offset_and_warning(loaded: RunningServer) -> None:
    web = http(loaded)
    everything = [uid_of(a, "0020000D") for a in web.get("/studies").json()]
    files = (CT_SMALL, JPEG2000, MULTIFRAME, RLE_RGB)
    assert len(everything) == len({located_uids(path)[0] for path in files}) + 6
    first = web.get("/studies", params={"limit": 4})
    assert [uid_of(a, "0020000D") for a in first.json()] == everything[:4]
    assert "additional results" in first.headers["warning"]
    rest = web.get("/studies", params={"limit": 100, "offset": 8})
    assert [uid_of(a, "0020000D") for a in rest.json()] == everything[8:]
    assert "warning" not in rest.headers
    assert web.get("/studies", params={"offset": 50}).json() == []


def test_fuzzy_matching_is_accepted_with_a_warning(loaded: RunningServer) -> None:
    response = http(loaded).get("/studies", params={"PatientName": "mül*", "fuzzymatching": "true"})
    assert response.status_code == 200
    assert len(response.json()) == 1
    assert "fuzzymatching" in response.headers["warning"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"NoSuchKeyword": "it"}, "NoSuchKeyword"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "99999999999999999999"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"includefield": "Nonsense"}, "Nonsense"),
        ({"StudyDate": "notadate"}, "StudyDate"),
        ({"StudyDate": "20261301"}, "StudyDate"),
        ({"StudyDate": "20260101-notadate"}, "StudyDate"),
        ({"00080020": "2026-01-01"}, "00080020"),
        ({"StudyTime": "noon"}, "StudyTime"),
        ({"StudyInstanceUID": "1.2.3,,1.2.4"}, "StudyInstanceUID"),
        ({"StudyInstanceUID": "1.2.3,"}, "StudyInstanceUID"),
        ({"StudyInstanceUID": "not-a-uid"}, "StudyInstanceUID"),
        ({"SeriesInstanceUID": "1..2"}, "SeriesInstanceUID"),
        ({"SeriesNumber": "two"}, "SeriesNumber"),
        ({"NumberOfStudyRelatedInstances": "many"}, "NumberOfStudyRelatedInstances"),
        ({"StudyDate": "2026*"}, "StudyDate"),
    ],
)
def test_bad_query_parameters_get_400_naming_them(
    loaded: RunningServer, params: dict[str, str], named: str
) -> None:
    """PS3.18: an invalid query parameter value is a 400, never an empty 200."""
    response = http(loaded).get("/studies", params=params)
    assert response.status_code == 400
    assert named in response.text
    refused = next(iter(params.values()))
    assert refused in response.text or named == "NoSuchKeyword"  # and the value refused


def test_valid_values_of_every_kind_still_match(loaded: RunningServer) -> None:
    web = http(loaded)
    study = "1.2.826.0.1.3680043.8.498.100"
    for params in (
        {"StudyInstanceUID": f"{study},1.2.3"},
        {"StudyInstanceUID": study, "StudyDate": "20260101-"},
        {"StudyInstanceUID": study, "StudyDate": "", "PatientName": "*"},
        {"PatientID": "QIDO1", "StudyTime": "-2359", "SeriesNumber": "1"},
        {"PatientID": "QIDO1", "limit": "0"},
    ):
        response = web.get("/studies", params=params)
        assert response.status_code == 200, (params, response.text)
        assert [uid_of(a, "0020000D") for a in response.json()] == (
            [] if "limit" in params else [study]
        ), params


def test_qido_as_xml(loaded: RunningServer) -> None:
    response = http(loaded).get(
        "/studies",
        params={"PatientID": "QIDO1"},
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert response.status_code == 200
    [(headers, body)] = parts(response)
    assert headers["Content-Type"] == "application/dicom+xml"
    assert b'keyword="PatientName"' in body
    assert "<FamilyName>Müller</FamilyName>".encode() in body
    not_acceptable = http(loaded).get("/studies", headers={"Accept": "image/png"})
    assert not_acceptable.status_code == 406


def test_dicomweb_client_search(loaded: RunningServer) -> None:
    found = client(loaded).search_for_studies(search_filters={"PatientName": "*erson*"}, limit=2)
    assert len(found) == 2
    series = client(loaded).search_for_series(search_filters={"Modality": "SR"})
    assert len(series) == 1


# WADO-RS --------------------------------------------------------------------


def located_uids(path: Path) -> tuple[str, str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_retrieve_any_syntax_gives_the_stored_bytes(loaded: RunningServer) -> None:
    study, series, sop = located_uids(JPEG2000)
    instance = client(loaded).retrieve_instance(
        study, series, sop, media_types=(("application/dicom", "*"),)
    )
    assert instance.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    response = http(loaded).get(
        f"/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    [(headers, body)] = parts(response)
    assert headers["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.91"
    assert body == stored_path(loaded, sop).read_bytes()


def test_retrieve_defaults_to_explicit_little_endian_decoded(loaded: RunningServer) -> None:
    study, series, _ = located_uids(RLE_RGB)
    [instance] = client(loaded).retrieve_series(study, series)  # asks for no syntax
    assert instance.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    original = dcmread(RLE_RGB)
    assert np.array_equal(instance.pixel_array, original.pixel_array)  # lossless stays exact


def test_retrieve_lossless_to_lossless_and_refuses_lossy(loaded: RunningServer) -> None:
    study, series, sop = located_uids(CT_SMALL)
    url = f"/studies/{study}/series/{series}/instances/{sop}"
    rle = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.5'
    [(headers, body)] = parts(http(loaded).get(url, headers={"Accept": rle}))
    assert headers["Content-Type"].endswith("transfer-syntax=1.2.840.10008.1.2.5")
    converted = dcmread(io.BytesIO(body))
    assert np.array_equal(converted.pixel_array, dcmread(CT_SMALL).pixel_array)
    lossy = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}'
    assert http(loaded).get(url, headers={"Accept": lossy}).status_code == 406


def test_unknown_entities_get_404(loaded: RunningServer) -> None:
    web = http(loaded)
    assert web.get("/studies/1.2.3.4").status_code == 404
    assert web.get("/studies/1.2.3.4/metadata").status_code == 404
    study, series, _ = located_uids(CT_SMALL)
    assert web.get(f"/studies/{study}/series/{series}/instances/9.9/frames/1").status_code == 404


def test_series_metadata_with_bulk_data_uris(loaded: RunningServer) -> None:
    study, series, sop = located_uids(CT_SMALL)
    [metadata] = client(loaded).retrieve_series_metadata(study, series)
    original = dcmread(CT_SMALL)
    assert metadata["00080018"]["Value"] == [sop]
    assert metadata["00100010"]["Value"] == [{"Alphabetic": str(original.PatientName)}]
    pixel_uri = metadata["7FE00010"]["BulkDataURI"]
    assert pixel_uri.startswith(f"{loaded.url}/dicom-web/studies/{study}/series/{series}")
    inline = [tag for tag, element in metadata.items() if "InlineBinary" in element]
    assert all(len(metadata[tag]["InlineBinary"]) <= 1400 for tag in inline)  # small only
    private = [tag for tag in metadata if int(tag[:4], 16) % 2 == 1]
    assert private, "private elements are part of the metadata"
    [(_, pixels)] = parts(httpx.get(pixel_uri, headers={"Accept": "multipart/related"}))
    assert pixels == original.PixelData


def test_study_metadata_is_kept_in_the_index(loaded: RunningServer) -> None:
    study = "1.2.826.0.1.3680043.8.498.100"
    metadata = client(loaded).retrieve_study_metadata(study)
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(
        f"{study}.{series}.{n}" for series in (1, 2) for n in (1, 2, 3)
    )
    archive = loaded.archive()
    try:
        with archive.database.reader.connect() as connection:
            kept = connection.execute(sa.select(sa.func.count()).select_from(instance_metadata))
            assert kept.scalar_one() >= 6
    finally:
        archive.close()


def test_metadata_as_xml(loaded: RunningServer) -> None:
    study, series, sop = located_uids(CT_SMALL)
    response = http(loaded).get(
        f"/studies/{study}/series/{series}/instances/{sop}/metadata",
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    [(_, body)] = parts(response)
    assert f'<Value number="1">{sop}</Value>'.encode() in body
    assert b"<BulkData uri=" in body


def test_frames_as_stored_for_viewers(loaded: RunningServer) -> None:
    """OHIF asks for any syntax and reads each part's Content-Type."""
    study, series, sop = located_uids(JPEG2000)
    url = f"/studies/{study}/series/{series}/instances/{sop}/frames/1"
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    [(headers, frame)] = parts(http(loaded).get(url, headers={"Accept": accept}))
    assert headers["Content-Type"] == "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91"
    assert frame.startswith(b"\xff\x4f\xff\x51")  # a JPEG 2000 codestream
    [(headers, native)] = parts(
        http(loaded).get(
            url, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
        )
    )
    assert (
        headers["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    assert native == dcmread(JPEG2000).pixel_array.astype("<u2").tobytes()


def test_frames_of_a_multi_frame_object(loaded: RunningServer) -> None:
    study, series, sop = located_uids(MULTIFRAME)
    frames = client(loaded).retrieve_instance_frames(study, series, sop, frame_numbers=[2, 7])
    pixels = dcmread(MULTIFRAME).pixel_array
    assert frames == [pixels[1].tobytes(), pixels[6].tobytes()]
    url = f"/studies/{study}/series/{series}/instances/{sop}/frames"
    assert http(loaded).get(f"{url}/11").status_code == 404
    assert http(loaded).get(f"{url}/0").status_code == 400
    assert http(loaded).get(f"{url}/a,b").status_code == 400


def unzipped_fileset(response: httpx.Response, into: Path) -> FileSet:
    """The file-set in a ZIP answer: a DICOMDIR first, then only the files it names."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        archive.extractall(into)
    assert names[0] == "DICOMDIR"
    fileset = FileSet(dcmread(into / "DICOMDIR"))
    assert sorted(Path(i.FileID).as_posix() for i in fileset) == sorted(names[1:])
    return fileset


def test_zip_download_of_a_study(loaded: RunningServer, tmp_path: Path) -> None:
    """The stored files, untouched, under the File IDs of a DICOMDIR in the ZIP."""
    study = "1.2.826.0.1.3680043.8.498.100"
    response = http(loaded).get(f"/studies/{study}", params={"accept": "application/zip"})
    fileset = unzipped_fileset(response, tmp_path / "study")
    assert len(fileset) == 6
    for instance in fileset:
        stored = stored_path(loaded, instance.SOPInstanceUID).read_bytes()
        assert Path(instance.path).read_bytes() == stored

    j2k = dcmread(JPEG2000)
    url = f"/studies/{j2k.StudyInstanceUID}/series/{j2k.SeriesInstanceUID}"
    response = http(loaded).get(url, params={"accept": "application/zip"})
    (instance,) = unzipped_fileset(response, tmp_path / "series")
    checked = dcmtk("dciodvfy", str(tmp_path / "series" / "DICOMDIR"))  # dicom3tools
    assert "Error" not in checked.stdout + checked.stderr, checked.stderr
    assert instance.TransferSyntaxUID == j2k.file_meta.TransferSyntaxUID  # no conversion
    assert Path(instance.path).read_bytes() == stored_path(loaded, j2k.SOPInstanceUID).read_bytes()


def test_cors_for_a_viewer_on_another_origin(loaded: RunningServer) -> None:
    preflight = http(loaded).options(
        "/studies",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://viewer.example"
    answer = http(loaded).get("/studies", headers={"Origin": "https://viewer.example"})
    assert answer.headers["access-control-allow-origin"] == "https://viewer.example"
    elsewhere = http(loaded).get("/studies", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in elsewhere.headers


# Metadata documents: made once receiving pauses, renewed for a replaced copy ---------------


def test_metadata_is_made_in_the_background(server_factory: ServerFactory) -> None:
    server = server_factory(duplicate_policy="overwrite")
    first = ct_dataset(StudyDescription="before")
    assert send_datasets(server.port, [first]) == [0]
    deadline = time.monotonic() + 15
    while count_documents(server) == 0:
        assert time.monotonic() < deadline, "no metadata document made in the background"
        time.sleep(0.2)
    replaced = Dataset()
    replaced.update(first)
    replaced.file_meta = first.file_meta
    replaced.StudyDescription = "after"
    assert send_datasets(server.port, [replaced]) == [0]
    [metadata] = client(server).retrieve_study_metadata(str(first.StudyInstanceUID))
    assert metadata["00081030"]["Value"] == ["after"]


def count_documents(server: RunningServer) -> int:
    archive = server.archive()
    try:
        with archive.database.reader.connect() as connection:
            query = sa.select(sa.func.count()).select_from(instance_metadata)
            return int(connection.execute(query).scalar_one())
    finally:
        archive.close()


def test_openapi_description_lists_the_resources(loaded: RunningServer) -> None:
    description = httpx.get(f"{loaded.url}/openapi.json").json()
    assert description["openapi"].startswith("3.")
    studies = description["paths"]["/dicom-web/studies"]["get"]
    assert studies["summary"] == "Search for studies (QIDO-RS)."
    assert {p["name"] for p in studies["parameters"]} >= {"limit", "offset", "includefield"}
    frames = "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"
    assert [p["name"] for p in description["paths"][frames]["get"]["parameters"]] == [
        "study",
        "series",
        "instance",
        "frames",
    ]


def test_a_viewer_opens_a_study_as_ohif_does(loaded: RunningServer) -> None:
    """OHIF v3's requests, in its order and with its headers."""
    web = http(loaded)
    json_only = {"Accept": "application/dicom+json"}
    listing = web.get(
        "/studies",
        params={
            "limit": "101",
            "offset": "0",
            "fuzzymatching": "false",
            "includefield": "00081030,00080060",
            "PatientName": "*ülle*",
        },
        headers=json_only,
    )
    [study] = listing.json()
    study_uid = uid_of(study, "0020000D")
    assert values(study, "00081030") == ["Thorax"]
    series = web.get(f"/studies/{study_uid}/series", headers=json_only).json()
    for one in series:
        series_uid = uid_of(one, "0020000E")
        metadata = web.get(f"/studies/{study_uid}/series/{series_uid}/metadata", headers=json_only)
        for instance in metadata.json():
            sop = instance["00080018"]["Value"][0]
            frame = web.get(
                f"/studies/{study_uid}/series/{series_uid}/instances/{sop}/frames/1",
                headers={
                    "Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"
                },
            )
            [(headers, pixels)] = parts(frame)
            assert headers["Content-Type"].endswith("transfer-syntax=1.2.840.10008.1.2.1")
            assert (
                len(pixels)
                == instance["00280010"]["Value"][0] * instance["00280011"]["Value"][0] * 2
            )
