"""The web UI's study list on 10,000 studies, and OHIF's time to first image.

1. The index of ``make bench-query`` with 10,000 studies (100,000 instances, built
   once and cached in benchmarks/.cache) is copied and served; the study list page
   (``GET /studies``: the first page, a name search, a page far down, another sort)
   is asked for 20 times each, and the server's own time per request is read from
   its HTTP access log.
2. A 300-slice CT (512 x 512, 16 bits, 150 MB) is imported into a fresh archive with
   the OHIF viewer installed; Debian's Chromium opens it from a fresh profile each
   time, and the time from navigation to the first non-black pixels on OHIF's canvas
   is measured, 3 times.

Run: ``make bench-ui`` (needs chromium and network for the first viewer install).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import query
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from browser import launch, wait_for_pixels
from conftest import RunningServer, free_port, write_config
from playwright.sync_api import sync_playwright

RESULTS = Path(__file__).parent / "results" / "ui.json"
LIST_PAGES = {
    "first page, newest first": "/studies",
    "patient name prefix": "/studies?name=SMITH",
    "page 200 of 400": "/studies?page=200",
    "sorted by patient name": "/studies?sort=PatientName",
    "modality and date range": "/studies?modality=CT&from=2024-01-01&to=2024-06-30",
}
SLICES = 300
_ACCESS = re.compile(r'"GET (\S+)" (\d+) \d+ B (\d+) ms')


def serve(folder: Path, data_dir: Path, **settings: object) -> RunningServer:
    dicom_port, http_port = free_port(), free_port()
    config = write_config(
        folder / "pacsnode.toml",
        {
            "dicom_port": dicom_port,
            "http_port": http_port,
            "data_dir": str(data_dir),
            "bind_address": "127.0.0.1",
            "workers": 1,
            "log_level": "INFO",
            **settings,
        },
        [],
    )
    log = folder / "server.log"
    database = f"sqlite:///{data_dir / 'index.sqlite'}"
    return RunningServer(config, data_dir, dicom_port, "PACSNODE", log, database, http_port)


def study_list(folder: Path) -> dict[str, dict[str, float]]:
    population = query.Population(100_000)
    head, digest = query.schema_fingerprint()
    key = f"{population.instances}_{head}_{digest}".lower().replace("-", "_")
    built = query.sqlite_index(population, key, rebuild=False)
    data = folder / "list-data"
    shutil.copytree(built.data_dir, data)
    server = serve(folder, data, http_access_log=True).start(timeout=120)
    client_times: dict[str, list[float]] = {path: [] for path in LIST_PAGES.values()}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for path in LIST_PAGES.values():
                for _ in range(21):  # the first warms the caches
                    started = time.perf_counter()
                    assert client.get(path).status_code == 200, path
                    client_times[path].append((time.perf_counter() - started) * 1000)
    finally:
        server.stop()
    times: dict[str, list[float]] = {path: [] for path in LIST_PAGES.values()}
    for line in server.log().splitlines():
        found = _ACCESS.search(line)
        if found and found[1] in times:
            times[found[1]].append(float(found[3]))
    results = {}
    for label, path in LIST_PAGES.items():
        measured = sorted(times[path][1:])
        results[label] = {
            "server_median_ms": statistics.median(measured),
            "server_max_ms": measured[-1],
            "client_median_ms": statistics.median(client_times[path][1:]),
        }
        print(f"study list, {label}: {results[label]}", flush=True)
    return results


def ct_volume(folder: Path) -> tuple[str, Path]:
    """300 axial slices of a water cylinder with a bone ring, in HU + 1024."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    y, x = np.mgrid[:512, :512]
    radius = np.hypot(x - 256, y - 256)
    image = np.where(radius < 200, 1024, 24) + np.where((radius > 180) & (radius < 200), 800, 0)
    slices = folder / "ct"
    slices.mkdir()
    for number in range(SLICES):
        dataset = Dataset()
        dataset.SOPClassUID = CTImageStorage
        dataset.SOPInstanceUID = generate_uid()
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.FrameOfReferenceUID = frame
        dataset.PatientName, dataset.PatientID = "BENCH^CT300", "BENCH300"
        dataset.Modality, dataset.StudyDate, dataset.SeriesNumber = "CT", "20260101", 1
        dataset.InstanceNumber = number + 1
        dataset.ImagePositionPatient = [-179.2, -179.2, number * 1.0]
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.PixelSpacing, dataset.SliceThickness = [0.7, 0.7], 1.0
        dataset.Rows = dataset.Columns = 512
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
        dataset.PixelRepresentation, dataset.SamplesPerPixel = 0, 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.RescaleIntercept, dataset.RescaleSlope = -1024, 1
        dataset.WindowCenter, dataset.WindowWidth = 40, 400
        shade = (number % 50) * 4
        dataset.PixelData = (image + shade).astype("<u2").tobytes()
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.save_as(slices / f"{number:03}.dcm", enforce_file_format=True)
    return study, slices


def first_image(folder: Path) -> dict[str, float | list[float]]:
    study, slices = ct_volume(folder)
    data = folder / "ct-data"
    server = serve(folder, data)
    pacsnode = [sys.executable, "-m", "pacsnode"]
    config = str(server.config_path)
    subprocess.run([*pacsnode, "viewer", "install", "--config", config], check=True)
    subprocess.run([*pacsnode, "import", "--config", config, str(slices)], check=True)
    server.start(timeout=60)
    seconds = []
    try:
        with sync_playwright() as playwright:
            for _ in range(3):
                browser = launch(playwright)  # a fresh profile: nothing cached
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                started = time.monotonic()
                page.goto(f"{server.url}/viewer?StudyInstanceUIDs={study}")
                seconds.append(time.monotonic() - started + wait_for_pixels(page, timeout=120))
                browser.close()
    finally:
        server.stop()
    print(f"OHIF first image of a {SLICES}-slice CT: {[round(s, 2) for s in seconds]} s")
    return {"runs_s": seconds, "median_s": statistics.median(seconds)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pacsnode-bench-ui-") as name:
        folder = Path(name)
        results: dict[str, object] = {"study_list_10000_studies": study_list(folder)}
        results["ohif_first_image_ct300"] = first_image(folder)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
