"""The Print SCU against DCMTK's print SCP (dcmprscp), a real printer stand-in.

dcmprscp keeps every printed film in its database folder as a Stored Print object
(the film box and the image box positions) and one Hardcopy Grayscale Image per image
box (the pixels it received), which is what these tests read back.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import RunningServer, ServerFactory, ct_dataset, free_port, save
from peers import pacsnode_cli
from print_scp import PrintServer
from pydicom import Dataset, dcmread

from pacsnode.config import ConfigError, load_settings
from pacsnode.dimse.print_scu import COLOR_META, GRAYSCALE_META, PrintFailed, print_images
from pacsnode.dimse.scu import Peer

PRINTER_AE = "IHEFULL"
STORED_PRINT = "1.2.840.10008.5.1.1.27"
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"
DCMPRSCP_CONFIG = """\
[[GENERAL]]
[DATABASE]
Directory = {database}
[PRINT]
Directory = {spool}
[[COMMUNICATION]]
[IHEFULL]
Aetitle = IHEFULL
Description = test printer
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
DisplayFormat = 1,1\\1,2\\2,2\\2,3\\3,3
FilmDestination = MAGAZINE\\PROCESSOR
FilmSizeID = 8INX10IN\\10INX12IN\\14INX14IN\\14INX17IN\\24CMX24CM
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
MaxDensity = 320
MinDensity = 20
MaxPDU = 32768
ImplicitOnly = false
DisableNewVRs = false
OmitSOPClassUIDFromCreateResponse = false
PresentationLUTMatchRequired = false
PresentationLUTinFilmSession = false
SupportsPresentationLUT = true
Supports12Bit = true
"""


@dataclass(frozen=True)
class PrintSCP:
    port: int
    database: Path
    log: Path

    def films(self) -> list[Dataset]:
        return self._objects(STORED_PRINT)

    def images(self) -> dict[str, Dataset]:
        return {ds.SOPInstanceUID: ds for ds in self._objects(HARDCOPY_GRAYSCALE)}

    def _objects(self, sop_class: str) -> list[Dataset]:
        found = (dcmread(path) for path in sorted(self.database.glob("*.dcm")))
        return [ds for ds in found if ds.SOPClassUID == sop_class]

    def logged(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def wait_for_log(self, text: str, times: int) -> None:
        """Return once dcmprscp has logged ``text`` ``times`` times in all."""
        deadline = time.monotonic() + 10
        while self.logged(text) < times:
            assert time.monotonic() < deadline, f"{text!r} not logged by dcmprscp"
            time.sleep(0.05)

    def clear(self) -> None:
        for path in self.database.glob("*.dcm"):
            path.unlink()


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dcmprscp exited early with {process.returncode}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"dcmprscp on port {port} does not listen")


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrintSCP]:
    base = tmp_path_factory.mktemp("dcmprscp")
    database, spool = base / "database", base / "spool"
    database.mkdir()
    spool.mkdir()
    port = free_port()
    config = base / "dcmprscp.cfg"
    config.write_text(DCMPRSCP_CONFIG.format(port=port, database=database, spool=spool))
    log_path = base / "dcmprscp.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        ["dcmprscp", "-c", str(config), "-v"], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        wait_for_port(port, process)
        yield PrintSCP(port, database, log_path)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def scp(printer: PrintSCP) -> PrintSCP:
    printer.clear()
    return printer


def ct_image(number: int, center: float, width: float) -> Dataset:
    """A CT image in Hounsfield units (intercept -1024) with its own window, so that
    each printed image has different 8-bit levels."""
    ds = ct_dataset(
        rows=16,
        InstanceNumber=number,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=center,
        WindowWidth=width,
    )
    ds.PixelData = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 8 + number).tobytes()
    return ds


def windowed(image: Dataset, top: int = 255) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear windowing to 0-``top``, written out independently."""
    stored = np.frombuffer(image.PixelData, dtype=np.uint16).reshape(16, 16).astype(float)
    values = stored * float(image.RescaleSlope) + float(image.RescaleIntercept)
    center, width = float(image.WindowCenter), float(image.WindowWidth)
    levels = ((values - (center - 0.5)) / (width - 1) + 0.5) * top
    levels[values <= center - 0.5 - (width - 1) / 2] = 0
    levels[values > center - 0.5 + (width - 1) / 2] = top
    return np.clip(np.rint(levels), 0, top).astype(np.uint8 if top == 255 else np.uint16)


def printed_by_position(scp: PrintSCP, film: Dataset, bits: int = 8) -> dict[int, np.ndarray]:
    images = scp.images()
    result = {}
    for box in film.ImageBoxContentSequence:
        image = images[box.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        assert (image.PhotometricInterpretation, image.BitsStored) == ("MONOCHROME2", bits)
        result[int(box.ImageBoxPosition)] = image.pixel_array
    return result


def test_prints_a_two_by_two_film_of_windowed_8_bit_images(scp: PrintSCP) -> None:
    images = [ct_image(n, center=-900 + 150 * n, width=400 + 100 * n) for n in range(1, 5)]

    result = print_images(
        Peer("127.0.0.1", scp.port, PRINTER_AE),
        images,
        layout="STANDARD\\2,2",
        film_size="14INX17IN",
        orientation="LANDSCAPE",
        magnification="BILINEAR",
    )

    assert (result.printer_status, result.images_printed, len(result.film_boxes)) == (
        "NORMAL",
        4,
        1,
    )
    assert result.warnings == []
    [film] = scp.films()
    box = film.FilmBoxContentSequence[0]
    assert box.ImageDisplayFormat == "STANDARD\\2,2"
    assert (box.FilmSizeID, box.FilmOrientation, box.MagnificationType) == (
        "14INX17IN",
        "LANDSCAPE",
        "BILINEAR",
    )
    printed = printed_by_position(scp, film)
    assert sorted(printed) == [1, 2, 3, 4]
    for position, image in enumerate(images, start=1):
        assert np.array_equal(printed[position], windowed(image))
    assert len({printed[n].tobytes() for n in printed}) == 4


def test_more_images_than_positions_fill_several_films(scp: PrintSCP) -> None:
    images = [ct_image(n, center=-800, width=500) for n in range(1, 4)]

    result = print_images(Peer("127.0.0.1", scp.port, PRINTER_AE), images, layout="STANDARD\\1,2")

    assert (result.images_printed, len(result.film_boxes)) == (3, 2)
    films = scp.films()
    assert len(films) == 2
    assert sorted(len(film.ImageBoxContentSequence) for film in films) == [1, 2]  # filled boxes


def test_a_refused_film_box_raises_with_its_status_and_aborts(scp: PrintSCP) -> None:
    aborted = scp.logged("Association Aborted")
    with pytest.raises(PrintFailed) as failure:
        print_images(
            Peer("127.0.0.1", scp.port, PRINTER_AE),
            [ct_image(1, center=-800, width=500)],
            film_size="99INX99IN",
        )

    assert failure.value.status == 0x0106  # Invalid Attribute Value: the film size
    assert scp.films() == []
    scp.wait_for_log("Association Aborted", aborted + 1)


def test_cli_prints_a_series_of_the_archive(
    scp: PrintSCP, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(start=False)
    add_printer(server.config_path, "film", PRINTER_AE, scp.port, layouts=["1,1", "2,2"])
    images = [ct_image(n, center=-800, width=500) for n in range(1, 5)]
    series = images[0].SeriesInstanceUID
    for image in images:
        image.StudyInstanceUID = images[0].StudyInstanceUID
        image.SeriesInstanceUID = series
    files = [save(image, tmp_path / f"{n}.dcm") for n, image in enumerate(images)]
    config = str(server.config_path)
    assert pacsnode_cli("import", *map(str, files), "-c", config).returncode == 0

    done = pacsnode_cli("print", "film", "--series", series, "--layout", "2,2", "-c", config)
    not_taken = pacsnode_cli("print", "film", "--series", series, "--layout", "3,3", "-c", config)
    unknown = pacsnode_cli("print", "lab", "--series", series, "-c", config)

    assert done.returncode == 0, done.stderr
    assert "printed 4 images on 1 films" in done.stdout
    assert not_taken.returncode == 2 and "takes the layouts 1,1, 2,2" in not_taken.stderr
    assert unknown.returncode == 2 and "no printer 'lab' (film)" in unknown.stderr
    [film] = scp.films()
    assert film.FilmBoxContentSequence[0].ImageDisplayFormat == "STANDARD\\2,2"
    printed = printed_by_position(scp, film)
    by_number = {int(image.InstanceNumber): windowed(image) for image in images}
    assert all(np.array_equal(printed[n], by_number[n]) for n in range(1, 5))


def test_cli_exit_codes(scp: PrintSCP, server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(start=False)
    image = ct_image(1, center=-800, width=500)
    config = str(server.config_path)
    assert (
        pacsnode_cli("import", str(save(image, tmp_path / "1.dcm")), "-c", config).returncode == 0
    )
    study = ["--study", image.StudyInstanceUID, "-c", config]

    refused = pacsnode_cli(
        "print", "127.0.0.1", str(scp.port), "-aec", PRINTER_AE, "--film-size", "99INX99IN", *study
    )
    unreachable = pacsnode_cli("print", "127.0.0.1", str(free_port()), *study)
    nothing = pacsnode_cli("print", "127.0.0.1", str(scp.port), "--study", "1.2.3", "-c", config)

    assert refused.returncode == 1, refused.stderr
    assert (unreachable.returncode, nothing.returncode) == (2, 2)


def add_printer(config: Path, name: str, ae_title: str, port: int, **keys: Any) -> None:
    """A ``[[printer]]`` table appended to a server's config file (JSON strings and
    lists are valid TOML)."""
    table = {"name": name, "ae_title": ae_title, "host": "127.0.0.1", "port": port, **keys}
    lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    with config.open("a") as handle:
        handle.write("\n[[printer]]\n" + "\n".join(lines) + "\n")


def rgb_image() -> Dataset:
    """A 2 x 3 RGB secondary capture image of known colours."""
    ds = ct_dataset(rows=2)
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        ds.pop(keyword, None)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = 2, 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = RGB_PIXELS.tobytes()
    return ds


RGB_PIXELS = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [255, 255, 255], [0, 0, 0]]],
    dtype=np.uint8,
)


@pytest.fixture
def colour_printer() -> Iterator[PrintServer]:
    printer = PrintServer().start()
    yield printer
    printer.stop()


def test_twelve_bit_film_with_an_identity_presentation_lut(scp: PrintSCP) -> None:
    images = [ct_image(n, center=-900 + 150 * n, width=400 + 100 * n) for n in range(1, 3)]

    result = print_images(
        Peer("127.0.0.1", scp.port, PRINTER_AE),
        images,
        layout="STANDARD\\1,2",
        bits=12,
        presentation_lut="IDENTITY",
    )

    [film] = scp.films()
    box = film.FilmBoxContentSequence[0]
    [lut] = film.PresentationLUTContentSequence
    assert (lut.SOPInstanceUID, lut.PresentationLUTShape) == (result.presentation_lut, "IDENTITY")
    assert box.ReferencedPresentationLUTSequence[0].ReferencedSOPInstanceUID == lut.SOPInstanceUID
    assert (box.Illumination, box.ReflectedAmbientLight) == (2000, 10)
    printed = printed_by_position(scp, film, bits=12)
    for position, image in enumerate(images, start=1):
        assert np.array_equal(printed[position], windowed(image, top=4095))


def test_colour_film_on_a_colour_printer(colour_printer: PrintServer) -> None:
    gray = ct_image(1, center=-800, width=500)

    result = print_images(
        Peer("127.0.0.1", colour_printer.port, colour_printer.ae_title),
        [rgb_image(), gray],
        layout="STANDARD\\1,2",
        presentation_lut="IDENTITY",
    )

    received = colour_printer.received
    assert received.problems == []
    assert received.meta_classes == [COLOR_META]
    [film] = received.film_boxes
    assert received.film_boxes[film].ImageDisplayFormat == "STANDARD\\1,2"
    boxes = received.images_of(film)
    assert all(box.is_color for box in boxes.values())
    assert np.array_equal(boxes[1].pixels(), RGB_PIXELS)
    assert np.array_equal(boxes[2].pixels(), np.stack([windowed(gray)] * 3, axis=-1))
    assert (result.color, result.presentation_lut, received.luts) == (True, "", {})
    assert result.notes == ["no Presentation LUT: it applies to grayscale printing only"]
    assert [(job.execution_status, job.info) for job in result.print_jobs] == [("DONE", "NORMAL")]
    assert [(e.source, e.name, e.info) for e in result.events] == [
        ("printer", "WARNING", "SUPPLY LOW"),
        ("print job", "DONE", "NORMAL"),
    ]
    assert received.printed == [film]
    assert received.deleted == [film, result.film_session]


def test_grayscale_printer_gets_colour_as_luminance_and_the_lin_od_lut() -> None:
    printer = PrintServer(color=False, print_job=False).start()
    try:
        result = print_images(
            Peer("127.0.0.1", printer.port, printer.ae_title),
            [rgb_image()],
            presentation_lut="LIN OD",
        )
    finally:
        printer.stop()

    received = printer.received
    assert received.problems == []
    assert received.meta_classes == [GRAYSCALE_META]
    [(lut_uid, lut)] = received.luts.items()
    assert (lut.PresentationLUTShape, result.presentation_lut) == ("LIN OD", lut_uid)
    [film] = received.film_boxes.values()
    assert film.ReferencedPresentationLUTSequence[0].ReferencedSOPInstanceUID == lut_uid
    [box] = received.image_boxes.values()
    r, g, b = (RGB_PIXELS[..., n].astype(np.int64) for n in range(3))
    luminance = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # ITU-R 601-2 luma
    assert np.array_equal(box.pixels(), luminance)
    assert result.notes == ["printed as grayscale (luminance): the printer accepted grayscale only"]
    assert result.print_jobs[0].execution_status == ""  # Print Job class not negotiated
    assert lut_uid in received.deleted


def test_a_failure_status_deletes_the_session_and_aborts() -> None:
    printer = PrintServer(failures={"Image Box N-SET": 0xC616}).start()
    try:
        with pytest.raises(PrintFailed) as failure:
            print_images(
                Peer("127.0.0.1", printer.port, printer.ae_title),
                [ct_image(1, center=-800, width=500)],
            )
        deadline = time.monotonic() + 5
        while printer.received.aborted == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        printer.stop()

    assert failure.value.status == 0xC616
    assert "Image Box N-SET failed with status 0xC616" in str(failure.value)
    received = printer.received
    [session] = received.sessions
    assert received.deleted == [session]
    assert received.printed == []
    assert received.aborted == 1


def test_an_image_that_cannot_be_decoded_ends_the_print_cleanly(
    colour_printer: PrintServer,
) -> None:
    broken = ct_image(2, center=-800, width=500)
    broken.PixelData = broken.PixelData[:100]

    with pytest.raises(PrintFailed, match=f"image {broken.SOPInstanceUID} cannot be printed"):
        print_images(
            Peer("127.0.0.1", colour_printer.port, colour_printer.ae_title),
            [ct_image(1, center=-800, width=500), broken],
            layout="STANDARD\\1,2",
        )

    received = colour_printer.received
    [session] = received.sessions
    assert (received.printed, received.deleted) == ([], [session])


def test_a_printer_in_failure_is_not_sent_a_film() -> None:
    printer = PrintServer(printer_status="FAILURE").start()
    try:
        with pytest.raises(PrintFailed, match=re.escape("the printer reports FAILURE (FILM JAM)")):
            print_images(
                Peer("127.0.0.1", printer.port, printer.ae_title),
                [ct_image(1, center=-800, width=500)],
            )
    finally:
        printer.stop()

    assert (printer.received.sessions, printer.received.image_boxes) == ({}, {})


def test_per_session_printing_prints_all_films_with_one_film_session_action(
    colour_printer: PrintServer,
) -> None:
    images = [ct_image(n, center=-800, width=500) for n in range(1, 4)]

    result = print_images(
        Peer("127.0.0.1", colour_printer.port, colour_printer.ae_title),
        images,
        layout="STANDARD\\1,2",
        per_session=True,
    )

    received = colour_printer.received
    [session] = received.sessions
    assert received.session_prints == [session]
    assert sorted(received.printed) == sorted(received.film_boxes) == sorted(result.film_boxes)
    assert (result.images_printed, len(result.film_boxes)) == (3, 2)
    assert [(job.execution_status, job.info) for job in result.print_jobs] == [("DONE", "NORMAL")]
    assert received.deleted == [*result.film_boxes, session]
    assert received.problems == []


def test_per_session_printing_on_dcmprscp(scp: PrintSCP) -> None:
    images = [ct_image(n, center=-900 + 150 * n, width=500) for n in range(1, 4)]

    result = print_images(
        Peer("127.0.0.1", scp.port, PRINTER_AE), images, layout="STANDARD\\1,2", per_session=True
    )

    assert (result.images_printed, len(result.film_boxes), result.warnings) == (3, 2, [])
    films = scp.films()
    assert sorted(len(film.ImageBoxContentSequence) for film in films) == [1, 2]
    printed = [printed_by_position(scp, film) for film in films]
    received = sorted(p.tobytes() for film in printed for p in film.values())
    assert received == sorted(windowed(image).tobytes() for image in images)


@pytest.mark.parametrize(
    ("status", "info"),
    [("FAILURE", "FILM JAM"), ("WARNING", "ELEC CONFIG ERR"), ("NORMAL", "INSUFFIC MEMORY")],
)
def test_a_printer_whose_queue_is_stopped_is_not_sent_a_film(status: str, info: str) -> None:
    printer = PrintServer(printer_status=status, printer_status_info=info).start()
    try:
        with pytest.raises(PrintFailed, match=re.escape(f"the printer reports {status} ({info})")):
            print_images(
                Peer("127.0.0.1", printer.port, printer.ae_title),
                [ct_image(1, center=-800, width=500)],
            )
    finally:
        printer.stop()

    assert (printer.received.sessions, printer.received.image_boxes) == ({}, {})


def test_a_printer_warning_prints_and_is_noted() -> None:
    printer = PrintServer(
        printer_status="WARNING", printer_status_info="COVER OPEN", session_event=(3, "FILM JAM")
    ).start()
    try:
        result = print_images(
            Peer("127.0.0.1", printer.port, printer.ae_title),
            [ct_image(1, center=-800, width=500)],
        )
    finally:
        printer.stop()

    assert (result.printer_status, result.printer_status_info) == ("WARNING", "COVER OPEN")
    assert len(printer.received.printed) == result.images_printed == 1
    assert [(e.source, e.name, e.info) for e in result.events if e.source == "printer"] == [
        ("printer", "FAILURE", "FILM JAM")
    ]
    assert result.notes == [
        "the printer reports WARNING (COVER OPEN)",
        "the printer reported FAILURE (FILM JAM) during the session",
    ]


def wait_for_job(server: RunningServer, pk: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = httpx.get(f"{server.url}/api/jobs/{pk}").json()
        if job["status"] in ("done", "failed") or job["attempts"] > 0:
            return job
        assert time.monotonic() < deadline, f"job {pk} did not finish: {job}"
        time.sleep(0.2)


def test_rest_api_queues_print_jobs(server_factory: ServerFactory, tmp_path: Path) -> None:
    good = PrintServer().start()
    bad = PrintServer(failures={"Film Box N-CREATE": 0xC616}).start()
    stopped = PrintServer(printer_status="WARNING", printer_status_info="REQ MED NOT AVAI").start()
    try:
        server = server_factory(start=False)
        add_printer(
            server.config_path,
            "colour",
            good.ae_title,
            good.port,
            color=True,
            layouts=["STANDARD\\1,1", "STANDARD\\1,2"],
            film_sizes=["8INX10IN", "14INX17IN"],
            description="colour paper",
            print_per_session=True,
        )
        add_printer(server.config_path, "broken", bad.ae_title, bad.port)
        add_printer(server.config_path, "stopped", stopped.ae_title, stopped.port)
        image = ct_image(1, center=-800, width=500)
        path = save(image, tmp_path / "1.dcm")
        assert pacsnode_cli("import", str(path), "-c", str(server.config_path)).returncode == 0
        server.start()
        study = image.StudyInstanceUID

        printers = httpx.get(f"{server.url}/api/printers").json()
        queued = httpx.post(
            f"{server.url}/api/print",
            json={"printer": "colour", "study": study, "layout": "1,2", "copies": 2},
        )
        failing = httpx.post(f"{server.url}/api/print", json={"printer": "broken", "study": study})
        halted = httpx.post(f"{server.url}/api/print", json={"printer": "stopped", "study": study})
        refusals = [
            httpx.post(f"{server.url}/api/print", json=body)
            for body in (
                {"printer": "nowhere", "study": study},
                {"printer": "colour", "study": study, "film_size": "24CMX24CM"},
                {"printer": "colour", "study": "1.2.3"},
            )
        ]
        done = wait_for_job(server, queued.json()["id"])
        failed = wait_for_job(server, failing.json()["id"])
        queue_stopped = wait_for_job(server, halted.json()["id"])
    finally:
        good.stop()
        bad.stop()
        stopped.stop()

    assert [(p["name"], p["film_sizes"][0]) for p in printers] == [
        ("colour", "8INX10IN"),
        ("broken", "14INX17IN"),
        ("stopped", "14INX17IN"),
    ]
    assert [p["print_per_session"] for p in printers] == [True, False, False]
    assert (queued.status_code, queued.headers["Location"]) == (
        202,
        f"/api/jobs/{queued.json()['id']}",
    )
    assert done["status"] == "done", done
    result = done["result"]
    assert (result["state"], result["images_printed"], result["color"]) == ("done", 1, True)
    assert result["print_jobs"][0]["execution_status"] == "DONE"
    [film] = good.received.film_boxes.values()
    assert (film.ImageDisplayFormat, film.FilmSizeID) == ("STANDARD\\1,2", "8INX10IN")
    [(session_uid, session)] = good.received.sessions.items()
    assert session.NumberOfCopies == 2
    assert good.received.session_prints == [session_uid]
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert "Film Box N-CREATE failed with status 0xC616" in failed["last_error"]
    assert failed["result"]["state"] == "failed"
    assert (queue_stopped["status"], queue_stopped["attempts"]) == ("failed", 1)
    assert "the printer reports WARNING (REQ MED NOT AVAI)" in queue_stopped["last_error"]
    assert queue_stopped["result"]["printer_status_info"] == "REQ MED NOT AVAI"
    assert stopped.received.sessions == {}
    assert [(r.status_code, r.json().get("field")) for r in refusals] == [
        (400, "printer"),
        (400, "film_size"),
        (404, None),
    ]


def test_printer_config_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text("[server]\n")
    add_printer(config, "film", "PRINTER", 104, bits=12, layouts=["STANDARD\\2,2"])
    [printer] = load_settings(config).printers
    assert (printer.bits, printer.layouts, printer.film_sizes) == (
        12,
        ("STANDARD\\2,2",),
        ("14INX17IN",),
    )
    assert printer.print_per_session is False
    config.write_text("[server]\n")
    add_printer(config, "film", "PRINTER", 104, print_per_session=True)
    assert load_settings(config).printers[0].print_per_session is True
    for bad, message in (
        ({"bits": 10}, "[[printer]] #1 (film) bits: 10 is not one of 8, 12"),
        (
            {"presentation_lut": "GAMMA"},
            "presentation_lut: 'GAMMA' is not one of '', 'IDENTITY', 'LIN OD'",
        ),
        ({"colour": True}, "[[printer]] #1 (film) has no key 'colour' (did you mean 'color'?)"),
    ):
        config.write_text("[server]\n")
        add_printer(config, "film", "PRINTER", 104, **bad)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(config)
