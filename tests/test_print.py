"""The Print SCU against DCMTK's print SCP (dcmprscp), a real printer stand-in.

dcmprscp keeps every printed film in its database folder as a Stored Print object
(the film box and the image box positions) and one Hardcopy Grayscale Image per image
box (the pixels it received), which is what these tests read back.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread

from pacsnode.dimse.print_scu import PrintFailed, print_images
from pacsnode.dimse.scu import Peer
from tests.conftest import ServerFactory, ct_dataset, free_port, save
from tests.peers import pacsnode_cli

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
SupportsPresentationLUT = false
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


def windowed(image: Dataset) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear windowing to 0-255, written out independently."""
    stored = np.frombuffer(image.PixelData, dtype=np.uint16).reshape(16, 16).astype(float)
    values = stored * float(image.RescaleSlope) + float(image.RescaleIntercept)
    center, width = float(image.WindowCenter), float(image.WindowWidth)
    levels = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    levels[values <= center - 0.5 - (width - 1) / 2] = 0
    levels[values > center - 0.5 + (width - 1) / 2] = 255
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def printed_by_position(scp: PrintSCP, film: Dataset) -> dict[int, np.ndarray]:
    images = scp.images()
    result = {}
    for box in film.ImageBoxContentSequence:
        image = images[box.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        assert (image.PhotometricInterpretation, image.BitsStored) == ("MONOCHROME2", 8)
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
    images = [ct_image(n, center=-800, width=500) for n in range(1, 5)]
    series = images[0].SeriesInstanceUID
    for image in images:
        image.StudyInstanceUID = images[0].StudyInstanceUID
        image.SeriesInstanceUID = series
    files = [save(image, tmp_path / f"{n}.dcm") for n, image in enumerate(images)]
    config = str(server.config_path)
    assert pacsnode_cli("import", *map(str, files), "-c", config).returncode == 0

    done = pacsnode_cli(
        "print", "127.0.0.1", str(scp.port), "-aec", PRINTER_AE,
        "--series", series, "--layout", "2,2", "-c", config,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "printed 4 images on 1 films" in done.stdout
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
