"""STOW-RS against a real server: dicomweb-client as the uploader for the happy paths,
hand-built multipart bodies through httpx for the details and the errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
from conftest import RunningServer, ServerFactory, ct_dataset, dataset_bytes, stored_path
from dicomweb_client import DICOMwebClient
from peers import associate
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from test_iocm import note

BOUNDARY = "stow-test-boundary"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
RETRIEVE_URL = "00081190"
WARNING_REASON = "00081196"
FAILURE_REASON = "00081197"
FAILED_SOP = "00081198"
REFERENCED_SOP = "00081199"
SOP_CLASS = "00081150"
SOP_INSTANCE = "00081155"

Part = tuple[dict[str, str], bytes]


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart(parts: list[Part]) -> bytes:
    body = b""
    for headers, content in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        body += f"--{BOUNDARY}\r\n{head}\r\n".encode() + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def dicom_parts(*contents: bytes) -> list[Part]:
    return [({"Content-Type": DICOM}, content) for content in contents]


def post(
    server: RunningServer,
    body: bytes | Iterator[bytes],
    part_type: str = DICOM,
    study: str | None = None,
    **headers: str,
) -> httpx.Response:
    url = f"{server.url}/dicom-web/studies" + (f"/{study}" if study else "")
    content_type = f'multipart/related; type="{part_type}"; boundary={BOUNDARY}'
    return httpx.post(url, content=body, headers={"Content-Type": content_type, **headers})


def sequence(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = answer.get(tag, {}).get("Value", [])
    return items


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


def in_index(server: RunningServer, sop_instance_uid: str) -> bool:
    archive = server.archive()
    try:
        return archive.index.find_instance(sop_instance_uid) is not None
    finally:
        archive.close()


def spool_is_empty(server: RunningServer) -> bool:
    """Nothing a request spooled is left behind, whatever became of it."""
    archive = server.archive()
    try:
        return not any(p.is_file() for p in archive.storage.tmp.rglob("*"))
    finally:
        archive.close()


def file_bytes(name: str) -> tuple[Path, bytes]:
    path = Path(get_testdata_file(name))  # type: ignore[arg-type]
    return path, path.read_bytes()


def test_store_with_dicomweb_client(server: RunningServer, tmp_path: Path) -> None:
    study = generate_uid()
    datasets = [ct_dataset(study=study, InstanceNumber=number) for number in (1, 2)]
    client = DICOMwebClient(f"{server.url}/dicom-web")

    answer = client.store_instances(datasets)

    assert "FailedSOPSequence" not in answer
    # dicomweb-client sends a Host header without the port; the URL follows that Host.
    assert answer.RetrieveURL.endswith(f"/dicom-web/studies/{study}")
    referenced = {str(item.ReferencedSOPInstanceUID): item for item in answer.ReferencedSOPSequence}
    assert set(referenced) == {str(ds.SOPInstanceUID) for ds in datasets}
    for ds in datasets:
        item = referenced[str(ds.SOPInstanceUID)]
        assert item.ReferencedSOPClassUID == ds.SOPClassUID
        assert item.RetrieveURL.endswith(
            f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )
        assert "WarningReason" not in item
        sent = tmp_path / "sent.dcm"
        sent.write_bytes(part10(ds))
        assert dataset_bytes(stored_path(server, str(ds.SOPInstanceUID))) == dataset_bytes(sent)
    assert "STOW-RS from 127.0.0.1: 2 stored, 0 failed" in server.log()


def test_data_set_bytes_and_syntax_kept_exactly(server: RunningServer) -> None:
    """A file with 179 private elements, and a JPEG Baseline one: stored as sent."""
    ct_path, ct = file_bytes("CT_small.dcm")
    jpeg_path, jpeg = file_bytes("SC_rgb_jpeg_dcmtk.dcm")

    response = post(server, multipart(dicom_parts(ct, jpeg)))

    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    answer = response.json()
    assert FAILED_SOP not in answer
    assert value(answer, RETRIEVE_URL) is None  # two studies: no one study URL
    referenced = sequence(answer, REFERENCED_SOP)
    assert len(referenced) == 2
    for path, item in zip((ct_path, jpeg_path), referenced, strict=True):
        original = dcmread(path, stop_before_pixels=True)
        assert value(item, SOP_INSTANCE) == original.SOPInstanceUID
        assert value(item, SOP_CLASS) == original.SOPClassUID
        assert value(item, RETRIEVE_URL) == (
            f"{server.url}/dicom-web/studies/{original.StudyInstanceUID}"
            f"/series/{original.SeriesInstanceUID}/instances/{original.SOPInstanceUID}"
        )
        stored = stored_path(server, original.SOPInstanceUID)
        assert dataset_bytes(stored) == dataset_bytes(path)
        syntax = dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert syntax == original.file_meta.TransferSyntaxUID
    jpeg_stored = stored_path(server, value(referenced[1], SOP_INSTANCE))
    assert dcmread(jpeg_stored).file_meta.TransferSyntaxUID == JPEGBaseline8Bit


def test_instance_of_another_study_is_refused(server: RunningServer) -> None:
    study = generate_uid()
    inside, outside = ct_dataset(study=study), ct_dataset()

    mixed = post(server, multipart(dicom_parts(part10(inside), part10(outside))), study=study)
    only_outside = post(server, multipart(dicom_parts(part10(outside))), study=study)

    assert mixed.status_code == 202
    answer = mixed.json()
    assert value(answer, RETRIEVE_URL) == f"{server.url}/dicom-web/studies/{study}"
    assert [value(item, SOP_INSTANCE) for item in sequence(answer, REFERENCED_SOP)] == [
        inside.SOPInstanceUID
    ]
    [failed] = sequence(answer, FAILED_SOP)
    assert value(failed, SOP_INSTANCE) == outside.SOPInstanceUID
    assert value(failed, SOP_CLASS) == outside.SOPClassUID
    assert value(failed, FAILURE_REASON) == 0xC409
    assert only_outside.status_code == 409
    assert value(sequence(only_outside.json(), FAILED_SOP)[0], FAILURE_REASON) == 0xC409
    assert in_index(server, inside.SOPInstanceUID)
    assert not in_index(server, outside.SOPInstanceUID)


def test_garbage_part_fails_with_c000(server: RunningServer) -> None:
    good = ct_dataset()
    garbage = b"this is not a DICOM file" * 20

    alone = post(server, multipart(dicom_parts(garbage)))
    mixed = post(server, multipart(dicom_parts(part10(good), garbage)))

    assert alone.status_code == 409
    assert alone.json() == {
        RETRIEVE_URL: {"vr": "UR"},
        FAILED_SOP: {"vr": "SQ", "Value": [{FAILURE_REASON: {"vr": "US", "Value": [0xC000]}}]},
    }
    assert mixed.status_code == 202
    answer = mixed.json()
    assert [value(item, SOP_INSTANCE) for item in sequence(answer, REFERENCED_SOP)] == [
        good.SOPInstanceUID
    ]
    assert [value(item, FAILURE_REASON) for item in sequence(answer, FAILED_SOP)] == [0xC000]
    assert "STOW-RS from 127.0.0.1: 1 stored, 1 failed" in server.log()
    assert "STOW-RS instance (unknown) not stored: status 0xC000" in server.log()
    assert spool_is_empty(server)


def test_duplicate_refused_reports_0111(server_factory: ServerFactory) -> None:
    server = server_factory(duplicate_policy="refuse")
    ds = ct_dataset()
    body = multipart(dicom_parts(part10(ds)))

    first, second = post(server, body), post(server, body)

    assert first.status_code == 200
    assert second.status_code == 409
    [failed] = sequence(second.json(), FAILED_SOP)
    assert value(failed, SOP_INSTANCE) == ds.SOPInstanceUID
    assert value(failed, FAILURE_REASON) == 0x0111


def test_copy_of_rejected_instance_answers_warning(server: RunningServer) -> None:
    """Ingest answers B006 for a copy of an instance rejected by an IOCM note."""
    ds = ct_dataset()
    rejection = note("113001", str(ds.StudyInstanceUID), [ds])
    assert post(server, multipart(dicom_parts(part10(ds), part10(rejection)))).status_code == 200

    again = post(server, multipart(dicom_parts(part10(ds))))

    assert again.status_code == 202
    answer = again.json()
    assert FAILED_SOP not in answer
    [item] = sequence(answer, REFERENCED_SOP)
    assert value(item, SOP_INSTANCE) == ds.SOPInstanceUID
    assert value(item, WARNING_REASON) == 0xB006
    assert value(item, RETRIEVE_URL) is None  # it is not there to retrieve


def test_unsupported_media_types_get_415(server: RunningServer) -> None:
    instance = part10(ct_dataset())
    url = f"{server.url}/dicom-web/studies"
    for content_type in (
        DICOM,
        "application/json",
        f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}',
        f'multipart/related; type="image/jpeg"; boundary={BOUNDARY}',
        f"multipart/form-data; boundary={BOUNDARY}",
        ";",
    ):
        body = multipart(dicom_parts(instance)) if "boundary" in content_type else instance
        response = httpx.post(url, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, content_type
    assert httpx.post(url, content=instance).status_code == 415


def test_broken_multipart_gets_400(server: RunningServer) -> None:
    ds = ct_dataset()
    whole = multipart(dicom_parts(part10(ds)))
    url = f"{server.url}/dicom-web/studies"

    truncated = post(server, whole[: len(whole) // 2])
    wrong_boundary = httpx.post(
        url,
        content=whole,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=other'},
    )
    no_boundary = httpx.post(
        url, content=whole, headers={"Content-Type": 'multipart/related; type="application/dicom"'}
    )
    no_parts = post(server, f"--{BOUNDARY}--\r\n".encode())
    bad_part_type = post(server, multipart([({"Content-Type": ";"}, part10(ds))]))

    assert truncated.status_code == 400
    assert "closing multipart boundary" in truncated.text
    assert wrong_boundary.status_code == 400
    assert "not valid multipart" in wrong_boundary.text
    assert no_boundary.status_code == 400
    assert "boundary" in no_boundary.text
    assert no_parts.status_code == 400
    assert bad_part_type.status_code == 400
    assert not in_index(server, ds.SOPInstanceUID)
    assert spool_is_empty(server)


def test_too_large_gets_413(server_factory: ServerFactory) -> None:
    server = server_factory(stow_max_bytes=1000)
    ds = ct_dataset(rows=32)  # 2 KiB of pixel data
    body = multipart(dicom_parts(part10(ds)))

    declared = post(server, body)
    streamed = post(server, iter([body[:500], body[500:]]))  # chunked: no Content-Length
    small = post(server, multipart(dicom_parts(part10(ct_dataset(rows=2)))))

    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert small.status_code == 200
    assert not in_index(server, ds.SOPInstanceUID)
    assert spool_is_empty(server)


def json_with_bulk_data(ds: Dataset, root: str) -> tuple[dict[str, Any], list[Part]]:
    """The DICOM JSON of ``ds`` with values over 64 bytes moved into bulk data parts."""
    parts: list[Part] = []

    def bulk(element: Any) -> str:
        uri = f"{root}/bulk/{element.tag:08X}"
        parts.append(
            ({"Content-Type": "application/octet-stream", "Content-Location": uri}, element.value)
        )
        return uri

    return ds.to_json_dict(bulk_data_threshold=64, bulk_data_element_handler=bulk), parts


def test_json_metadata_with_bulk_data(server: RunningServer) -> None:
    ds = ct_dataset(rows=16)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    block = ds.private_block(0x0009, "PACSNODE TEST", create=True)
    block.add_new(0x01, "OB", b"\x01\x02\x03\x04")  # small: sent as InlineBinary
    after = ds.private_block(0x7FE1, "PACSNODE TEST", create=True)
    after.add_new(0x01, "LO", "nach den Pixeln: äöü")  # written after the streamed pixels
    metadata, bulk = json_with_bulk_data(ds, "http://client.example/stow")
    assert metadata["7FE00010"]["BulkDataURI"] and metadata["00091001"]["InlineBinary"]
    body = multipart([({"Content-Type": DICOM_JSON}, json.dumps([metadata]).encode()), *bulk])

    response = post(server, body, part_type=DICOM_JSON)

    assert response.status_code == 200, response.text
    [item] = sequence(response.json(), REFERENCED_SOP)
    assert value(item, SOP_INSTANCE) == ds.SOPInstanceUID
    stored = dcmread(stored_path(server, ds.SOPInstanceUID))
    assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert stored.PatientName == "Müller^Jürgen"
    assert stored.PixelData == ds.PixelData
    assert stored[0x00091001].value == b"\x01\x02\x03\x04"
    assert stored[0x7FE11001].value == "nach den Pixeln: äöü"
    assert stored.Rows == 16 and stored.StudyDate == "20260115"


def test_json_with_compressed_pixel_data(server: RunningServer) -> None:
    """A JPEG frame as an image/jpeg part: stored encapsulated in the syntax it names."""
    original = dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    [frame] = generate_frames(original.PixelData, number_of_frames=1)
    ds = original.copy()
    del ds.PixelData
    metadata = ds.to_json_dict()
    uri = "http://client.example/frames/1"
    metadata["7FE00010"] = {"vr": "OB", "BulkDataURI": uri}
    jpeg = f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"
    body = multipart(
        [
            ({"Content-Type": DICOM_JSON}, json.dumps([metadata]).encode()),
            ({"Content-Type": jpeg, "Content-Location": uri}, frame),
        ]
    )

    response = post(server, body, part_type=DICOM_JSON)

    assert response.status_code == 200, response.text
    stored = dcmread(stored_path(server, original.SOPInstanceUID))
    assert stored.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert list(generate_frames(stored.PixelData, number_of_frames=1)) == [frame]
    assert stored.Rows == original.Rows
    assert stored.PhotometricInterpretation == original.PhotometricInterpretation


def test_json_instances_that_cannot_be_built_fail_with_c000(server: RunningServer) -> None:
    good, unresolved, unencodable = ct_dataset(), ct_dataset(), ct_dataset()
    root = "http://client.example/stow"
    good_metadata, good_bulk = json_with_bulk_data(good, f"{root}/good")
    unresolved_metadata, _ = json_with_bulk_data(unresolved, f"{root}/missing")
    unencodable_metadata, unencodable_bulk = json_with_bulk_data(unencodable, f"{root}/bad")
    unencodable_metadata["00280010"] = {"vr": "US", "Value": [70000]}  # Rows beyond US
    metadata = [good_metadata, unresolved_metadata, unencodable_metadata]
    body = multipart(
        [
            ({"Content-Type": DICOM_JSON}, json.dumps(metadata).encode()),
            *good_bulk,
            *unencodable_bulk,
        ]
    )

    response = post(server, body, part_type=DICOM_JSON)
    not_json = post(server, multipart([({"Content-Type": DICOM_JSON}, b"[{")]), DICOM_JSON)

    assert response.status_code == 202
    answer = response.json()
    [referenced] = sequence(answer, REFERENCED_SOP)
    assert value(referenced, SOP_INSTANCE) == good.SOPInstanceUID
    assert [
        (value(item, SOP_INSTANCE), value(item, FAILURE_REASON))
        for item in sequence(answer, FAILED_SOP)
    ] == [
        (unresolved.SOPInstanceUID, 0xC000),
        (unencodable.SOPInstanceUID, 0xC000),
    ]
    assert not_json.status_code == 400
    assert "metadata part is not JSON" in not_json.text
    assert not in_index(server, unresolved.SOPInstanceUID)
    assert not in_index(server, unencodable.SOPInstanceUID)
    assert spool_is_empty(server)


def test_xml_response_when_asked_for(server: RunningServer) -> None:
    ds = ct_dataset()
    body = multipart(dicom_parts(part10(ds), b"garbage"))

    response = post(server, body, Accept="application/dicom+xml")

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/dicom+xml"
    root = ElementTree.fromstring(response.content)
    namespace = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
    attributes = {node.get("keyword"): node for node in root.iter(f"{namespace}DicomAttribute")}
    assert attributes["ReferencedSOPInstanceUID"].findtext(f"{namespace}Value") == str(
        ds.SOPInstanceUID
    )
    assert attributes["FailureReason"].findtext(f"{namespace}Value") == str(0xC000)


def test_stored_instance_is_found_by_c_find(server: RunningServer) -> None:
    ds = ct_dataset(patient_id="STOW1")
    assert post(server, multipart(dicom_parts(part10(ds)))).status_code == 200
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = ds.StudyInstanceUID
    query.SeriesInstanceUID = ds.SeriesInstanceUID
    query.SOPInstanceUID = ""
    query.PatientID = ""

    assoc = associate(server.port, [(STUDY_ROOT_FIND, [ExplicitVRLittleEndian])], "WORKSTATION")
    assert assoc.is_established
    try:
        answers = [
            identifier
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND)
            if status and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        assoc.release()

    assert [(str(a.SOPInstanceUID), a.PatientID) for a in answers] == [
        (str(ds.SOPInstanceUID), "STOW1")
    ]
