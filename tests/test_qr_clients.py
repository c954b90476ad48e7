"""Query/Retrieve as real clients see it: a differential test against DCMTK dcmqrscp,
and Sirona SIDICOM QR walking the tree and retrieving studies (seed 000, A4 and A7)."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pydicom
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    ct_dataset,
    free_port,
    save,
    write_config,
)
from peers import dcmtk, dcmtk_server, send_files
from pydicom import Dataset, dcmread
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association

from pacsnode.config import Settings

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFICATION = "1.2.840.10008.1.1"

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
IO = "1.2.840.10008.5.1.4.1.1.1.3"
SC = "1.2.840.10008.5.1.4.1.1.7"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
RAW_DATA = "1.2.840.10008.5.1.4.1.1.66"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
PIXEL_KEYWORDS = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PixelData",
)
JPEG_FILE = Path(pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", read=False) or "")


# --- helpers -------------------------------------------------------------------------


def non_image(sop_class: str, modality: str, **attributes: Any) -> Dataset:
    """An instance of a non-image SOP class: ct_dataset's modules without the pixels."""
    ds = ct_dataset(sop_class=sop_class, modality=modality, **attributes)
    for keyword in PIXEL_KEYWORDS:
        delattr(ds, keyword)
    return ds


def identifier(level: str, **keys: str) -> Dataset:
    """A query identifier: Query/Retrieve Level and the keys, in the order given."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    with warnings.catch_warnings():  # wildcards are valid in keys, though not in CS values
        warnings.filterwarnings("ignore", "Invalid value for VR CS")
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
    return ds


def find_on(assoc: Association, model: str, query: Dataset) -> tuple[list[Dataset], int]:
    """One C-FIND on an open association: the pending identifiers and the final status."""
    matches: list[Dataset] = []
    final = -1
    for status, found in assoc.send_c_find(query, model):
        assert status is not None and "Status" in status, "no C-FIND response"
        if status.Status in (0xFF00, 0xFF01):
            matches.append(found)
        else:
            final = int(status.Status)
    return matches, final


def find(port: int, called_ae: str, model: str, query: Dataset) -> tuple[list[Dataset], int]:
    """One C-FIND on its own association."""
    ae = AE(ae_title="WORKSTATION")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(model, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    assert assoc.is_established, f"{called_ae} refused the association"
    try:
        return find_on(assoc, model, query)
    finally:
        assoc.release()


# --- 1. the same queries against pacsnode and DCMTK dcmqrscp ----------------------------


class Study(NamedTuple):
    patient_id: str
    date: str
    time: str
    accession: str
    study_id: str


class Series(NamedTuple):
    name: str
    study: str
    modality: str
    number: int
    sop_class: str
    instances: int


PATIENTS = {  # PatientID: (PatientName, PatientBirthDate, PatientSex)
    "PID001": ("MUELLER^HANS", "19600101", "M"),
    "PID002": ("MULLER^ANNA", "19751224", "F"),
    "PID003": ("SMITH^JOHN", "19820615", "M"),
    "PID004": ("SMITHERS^JANE", "19450310", "F"),
}
STUDIES = {  # name: (PatientID, StudyDate, StudyTime, AccessionNumber, StudyID)
    "s1": Study("PID001", "20150310", "083000", "ACC100", "1001"),
    "s2": Study("PID001", "20151120", "143000", "ACC200", "1002"),
    "s3": Study("PID002", "20160105", "120000", "ACC300", "2001"),
    "s4": Study("PID003", "20141231", "2359", "XA400", "3001"),  # HHMM is a valid TM too
    "s5": Study("PID004", "20150101", "000000", "ACC500", "4001"),
    "s6": Study("PID003", "20170707", "091500", "ACC600", "3002"),
}
SERIES = [  # name, study, Modality, SeriesNumber, SOP Class, number of instances
    Series("s1a", "s1", "CT", 1, CT, 3),
    Series("s1b", "s1", "OT", 99, RAW_DATA, 1),
    Series("s2a", "s2", "MR", 1, MR, 2),
    Series("s3a", "s3", "CT", 1, CT, 2),
    Series("s3b", "s3", "CT", 2, CT, 1),
    Series("s4a", "s4", "DX", 1, DX, 2),
    Series("s5a", "s5", "MR", 3, MR, 1),
    Series("s5b", "s5", "CR", 2, CR, 1),
    Series("s6a", "s6", "MR", 1, MR, 2),
]


class Corpus(NamedTuple):
    files: list[Path]
    uids: dict[str, str]
    """Name (study ``s1``, series ``s1a``, instance ``s1a2``, patient ID) to unique key."""


@pytest.fixture(scope="module")
def qr_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Four patients, six studies, nine series, fifteen instances (one Raw Data)."""
    folder = tmp_path_factory.mktemp("corpus")
    uids = {patient_id: patient_id for patient_id in PATIENTS}
    uids |= {name: generate_uid() for name in STUDIES}
    files = []
    for series in SERIES:
        study = STUDIES[series.study]
        name, birth_date, sex = PATIENTS[study.patient_id]
        uids[series.name] = generate_uid()
        for number in range(1, series.instances + 1):
            instance = f"{series.name}{number}"
            uids[instance] = generate_uid()
            attributes: dict[str, Any] = dict(
                instance=uids[instance],
                study=uids[series.study],
                series=uids[series.name],
                patient_id=study.patient_id,
                patient_name=name,
                modality=series.modality,
                sop_class=series.sop_class,
                PatientBirthDate=birth_date,
                PatientSex=sex,
                StudyDate=study.date,
                StudyTime=study.time,
                AccessionNumber=study.accession,
                StudyID=study.study_id,
                SeriesNumber=series.number,
                InstanceNumber=number,
            )
            image = series.sop_class != RAW_DATA
            ds = ct_dataset(**attributes) if image else non_image(**attributes)
            files.append(save(ds, folder / f"{instance}.dcm"))
    return Corpus(files, uids)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, qr_corpus: Corpus) -> Iterator[RunningServer]:
    """One pacsnode server for the module, loaded with the corpus by C-STORE."""
    base = tmp_path_factory.mktemp("pacsnode")
    port, http_port, data = free_port(), free_port(), base / "data"
    settings = {
        "ae_title": "PACSNODE",
        "dicom_port": port,
        "http_port": http_port,
        "data_dir": str(data),
        "bind_address": "127.0.0.1",
    }
    config = write_config(base / "pacsnode.toml", settings, [])
    database_url = Settings(data_dir=data).resolved_database_url
    server = RunningServer(
        config, data, port, "PACSNODE", base / "pacsnode.log", database_url, http_port
    )
    try:
        server.start()
        responses = send_files(port, qr_corpus.files)
        assert all(r is not None and r.Status == 0 for r in responses.values())
        yield server
    finally:
        server.kill()


DCMQRSCP_CONFIG = """\
NetworkTCPPort = {port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
DCMQRSCP {storage} R (100, 1024mb) ANY
AETable END
"""


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory, qr_corpus: Corpus) -> Iterator[int]:
    """DCMTK's reference archive, indexing the same files; yields its port."""
    base = tmp_path_factory.mktemp("dcmqrscp")
    storage = base / "storage"
    storage.mkdir()
    port = free_port()
    config = base / "dcmqrscp.cfg"
    config.write_text(DCMQRSCP_CONFIG.format(port=port, storage=storage))
    indexed = dcmtk("dcmqridx", str(storage), *map(str, qr_corpus.files))
    assert indexed.returncode == 0, indexed.stderr
    command = ["dcmqrscp", "-c", str(config), str(port)]
    with dcmtk_server(command, port, "DCMQRSCP", base / "dcmqrscp.log"):
        yield port


PR, SR = PATIENT_ROOT_FIND, STUDY_ROOT_FIND


def query(model: str, level: str, above: str, count: int, name: str, **keys: str) -> Any:
    """One differential query, as a test case named ``name``.

    ``above`` names the entity at each level above ``level`` ("PID001/s1/s1a" in Patient
    Root, "s1/s1a" in Study Root); key values may name entities too ("{s1}\\{s3}").
    ``count`` is how many matches the corpus holds, so that no query passes vacuously.
    """
    return pytest.param(model, level, above, keys, count, id=name)


QUERIES = [
    # Patient Root, PATIENT level
    query(PR, "PATIENT", "", 4, "pr-patient-universal"),
    query(PR, "PATIENT", "", 1, "pr-patient-name-single", PatientName="SMITH^JOHN"),
    query(PR, "PATIENT", "", 0, "pr-patient-name-family-only", PatientName="SMITH"),
    query(PR, "PATIENT", "", 2, "pr-patient-name-star", PatientName="MU*"),
    query(PR, "PATIENT", "", 2, "pr-patient-name-inner-star", PatientName="M*LLER^*"),
    query(PR, "PATIENT", "", 1, "pr-patient-name-question", PatientName="MU?LLER^HANS"),
    query(PR, "PATIENT", "", 1, "pr-patient-name-question-caret", PatientName="SMITH?JOHN"),
    query(PR, "PATIENT", "", 0, "pr-patient-name-question-one-char", PatientName="SMITH?"),
    query(PR, "PATIENT", "", 4, "pr-patient-name-only-star", PatientName="*"),
    query(PR, "PATIENT", "", 0, "pr-patient-no-match", PatientName="NOBODY*"),
    query(PR, "PATIENT", "", 4, "pr-patient-id-question", PatientID="PID00?"),
    query(PR, "PATIENT", "", 1, "pr-patient-birth-single", PatientBirthDate="19751224"),
    query(PR, "PATIENT", "", 2, "pr-patient-birth-closed", PatientBirthDate="19500101-19800101"),
    query(PR, "PATIENT", "", 1, "pr-patient-birth-open-end", PatientBirthDate="19800101-"),
    query(PR, "PATIENT", "", 2, "pr-patient-sex", PatientSex="F"),
    # Patient Root, STUDY, SERIES and IMAGE levels, under one patient, study, series
    query(PR, "STUDY", "PID001", 2, "pr-study-of-patient"),
    query(PR, "STUDY", "PID001", 1, "pr-study-date-closed", StudyDate="20150101-20150630"),
    query(PR, "STUDY", "PID003", 1, "pr-study-date-open-start", StudyDate="-20151231"),
    query(PR, "STUDY", "PID003", 1, "pr-study-date-open-end", StudyDate="20150101-"),
    query(PR, "STUDY", "PID001", 1, "pr-study-time-single", StudyTime="083000"),
    query(PR, "STUDY", "PID001", 1, "pr-study-accession-star", AccessionNumber="ACC2*"),
    query(PR, "SERIES", "PID001/s1", 2, "pr-series-all"),
    query(PR, "SERIES", "PID002/s3", 2, "pr-series-modality", Modality="CT"),
    query(PR, "SERIES", "PID002/s3", 1, "pr-series-number", SeriesNumber="2"),
    query(PR, "IMAGE", "PID001/s1/s1a", 3, "pr-image-all"),
    query(PR, "IMAGE", "PID001/s1/s1a", 1, "pr-image-instance-number", InstanceNumber="2"),
    query(PR, "IMAGE", "PID001/s1/s1a", 2, "pr-image-uid-list", SOPInstanceUID="{s1a1}\\{s1a3}"),
    query(
        PR,
        "IMAGE",
        "PID001/s1/s1a",
        1,
        "pr-image-uid-list-one-known",
        SOPInstanceUID="{s1a2}\\1.2.3.4",
    ),
    query(PR, "IMAGE", "PID001/s1/s1b", 1, "pr-image-raw-data"),
    # Study Root, STUDY level
    query(SR, "STUDY", "", 6, "sr-study-universal"),
    query(SR, "STUDY", "", 1, "sr-study-patient-id", PatientID="PID004"),
    query(SR, "STUDY", "", 3, "sr-study-name-star", PatientName="SMITH*"),
    query(SR, "STUDY", "", 3, "sr-study-name-inner-star", PatientName="*^J*"),
    query(SR, "STUDY", "", 3, "sr-study-birth-open-start", PatientBirthDate="-19700101"),
    query(SR, "STUDY", "", 4, "sr-study-sex", PatientSex="M"),
    query(SR, "STUDY", "", 1, "sr-study-date-single", StudyDate="20150310"),
    query(SR, "STUDY", "", 3, "sr-study-date-closed", StudyDate="20150101-20151231"),
    query(SR, "STUDY", "", 1, "sr-study-date-one-day", StudyDate="20150310-20150310"),
    query(SR, "STUDY", "", 2, "sr-study-date-open-start", StudyDate="-20150101"),
    query(SR, "STUDY", "", 2, "sr-study-date-open-end", StudyDate="20160101-"),
    query(SR, "STUDY", "", 3, "sr-study-time-closed", StudyTime="080000-130000"),
    query(SR, "STUDY", "", 2, "sr-study-time-open-start", StudyTime="-090000"),
    query(SR, "STUDY", "", 2, "sr-study-time-open-end", StudyTime="140000-"),
    # s4's StudyTime "2359" is 23:59, so within any range that starts at 23:59:00
    query(SR, "STUDY", "", 1, "sr-study-time-from-stored-minute", StudyTime="235900-"),
    query(SR, "STUDY", "", 2, "sr-study-time-hhmm", StudyTime="0830-0915"),
    query(
        SR,
        "STUDY",
        "",
        2,
        "sr-study-date-and-time",
        StudyDate="20150101-20151231",
        StudyTime="-120000",
    ),
    query(SR, "STUDY", "", 2, "sr-study-name-and-date", PatientName="MU*", StudyDate="-20151231"),
    query(SR, "STUDY", "", 1, "sr-study-accession-single", AccessionNumber="XA400"),
    query(SR, "STUDY", "", 5, "sr-study-accession-star", AccessionNumber="ACC*"),
    query(SR, "STUDY", "", 6, "sr-study-accession-leading-star", AccessionNumber="*00"),
    query(SR, "STUDY", "", 5, "sr-study-accession-question", AccessionNumber="ACC?00"),
    query(SR, "STUDY", "", 1, "sr-study-id-single", StudyID="1002"),
    query(SR, "STUDY", "", 2, "sr-study-id-question", StudyID="300?"),
    query(SR, "STUDY", "", 3, "sr-study-uid-list", StudyInstanceUID="{s1}\\{s3}\\{s6}"),
    # Study Root, SERIES and IMAGE levels
    query(SR, "SERIES", "s1", 2, "sr-series-universal"),
    query(SR, "SERIES", "s5", 1, "sr-series-modality", Modality="MR"),
    query(SR, "SERIES", "s5", 2, "sr-series-modality-question", Modality="?R"),
    query(SR, "SERIES", "s5", 1, "sr-series-number", SeriesNumber="3"),
    query(SR, "SERIES", "s3", 2, "sr-series-uid-list", SeriesInstanceUID="{s3a}\\{s3b}"),
    query(SR, "IMAGE", "s3/s3a", 2, "sr-image-universal"),
    query(SR, "IMAGE", "s6/s6a", 1, "sr-image-instance-number", InstanceNumber="1"),
    query(SR, "IMAGE", "s4/s4a", 1, "sr-image-sop-uid", SOPInstanceUID="{s4a2}"),
]


@pytest.mark.parametrize(("model", "level", "above", "keys", "count"), QUERIES)
def test_find_matches_what_dcmqrscp_matches(
    pacs: RunningServer,
    dcmqrscp: int,
    qr_corpus: Corpus,
    model: str,
    level: str,
    above: str,
    keys: dict[str, str],
    count: int,
) -> None:
    """pacsnode matches the same entities as DCMTK's reference archive on the same files."""
    uids = qr_corpus.uids
    levels = [lv for lv in UNIQUE_KEY if model == PR or lv != "PATIENT"]
    parents = above.split("/") if above else []
    unique = UNIQUE_KEY[level]
    request = {UNIQUE_KEY[lv]: uids[name] for lv, name in zip(levels, parents, strict=False)}
    request[unique] = ""
    request |= {keyword: value.format_map(uids) for keyword, value in keys.items()}
    names = {uid: name for name, uid in uids.items()}

    def matched(port: int, called_ae: str) -> list[str]:
        found, final = find(port, called_ae, model, identifier(level, **request))
        assert final == 0x0000, f"{called_ae} answered {final:#06x}"
        return sorted(names.get(str(ds[unique].value), str(ds[unique].value)) for ds in found)

    reference = matched(dcmqrscp, "DCMQRSCP")
    assert matched(pacs.port, "PACSNODE") == reference
    assert len(reference) == count


# --- 2. Sirona SIDICOM QR: walk the tree, then retrieve by C-MOVE -----------------------

SIDICOM_AE = "SIDICOM QR"  # calling AE title and incoming (move destination) AE title
SIDICOM_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
SIDICOM_PROPOSES = [VERIFICATION, PATIENT_ROOT_FIND, STUDY_ROOT_FIND]
SIDICOM_PROPOSES += [PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE]
SIDICOM_RECEIVES = [SC, DX, IO, VL_PHOTO, CT, RAW_DATA]  # no SR, no compressed syntaxes
STUDY_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription")
STUDY_KEYS += ("ReferringPhysicianName",)

Tree = dict[str, dict[str, dict[str, dict[str, str]]]]
"""PatientID -> StudyInstanceUID -> SeriesInstanceUID -> SOPInstanceUID -> SOPClassUID."""


class Incoming(NamedTuple):
    calling: str
    called: str
    proposed: dict[str, list[str]]
    """Abstract syntax: the transfer syntaxes proposed for it."""


class SidicomReceiver:
    """SIDICOM QR's temporary Storage SCP: six SOP classes, uncompressed syntaxes only."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: dict[str, Dataset] = {}
        self.syntaxes: dict[str, str] = {}
        self.associations: list[Incoming] = []
        self.released_at: list[float] = []
        ae = AE(ae_title=SIDICOM_AE)
        for sop_class in SIDICOM_RECEIVES:
            ae.add_supported_context(sop_class, SIDICOM_SYNTAXES)
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_ESTABLISHED, self._established),
                (evt.EVT_C_STORE, self._store),
                (evt.EVT_RELEASED, self._released),
            ],
        )

    def _established(self, event: evt.Event) -> None:
        request = event.assoc.requestor.primitive
        proposed = {
            str(cx.abstract_syntax): [str(ts) for ts in cx.transfer_syntax]
            for cx in event.assoc.requestor.requested_contexts
        }
        self.associations.append(
            Incoming(request.calling_ae_title.strip(), request.called_ae_title.strip(), proposed)
        )

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta  # the transfer syntax, to decode the pixels later
        self.received[str(ds.SOPInstanceUID)] = ds
        self.syntaxes[str(ds.SOPInstanceUID)] = str(event.context.transfer_syntax)
        return 0x0000

    def _released(self, event: evt.Event) -> None:
        self.released_at.append(time.monotonic())


def sidicom_associate(port: int) -> Association:
    """Associate exactly as SIDICOM QR 3.1 does (DCMTK 3.5.3 identity, no extended items)."""
    ae = AE(ae_title=SIDICOM_AE)
    ae.implementation_class_uid = "1.2.276.0.7230010.3.0.3.5.3"
    ae.implementation_version_name = "OFFIS_DCMTK_353"
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    contexts = [build_context(sop_class, SIDICOM_SYNTAXES) for sop_class in SIDICOM_PROPOSES]
    assoc = ae.associate("127.0.0.1", port, contexts=contexts, ae_title="PACSNODE")
    assert assoc.is_established
    for context in assoc.accepted_contexts:  # checklist item 4: ELE or ILE selected
        assert context.transfer_syntax[0] in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    return assoc


def jpeg_instance(folder: Path, **attributes: Any) -> Path:
    """pydicom's JPEG Baseline secondary capture, re-identified into our study."""
    ds = dcmread(JPEG_FILE)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return save(ds, folder / f"{ds.SOPInstanceUID}.dcm")


def tree_of(paths: list[Path]) -> Tree:
    """The patient/study/series/instance tree that a set of files makes."""
    tree: Tree = {}
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        study = tree.setdefault(str(ds.PatientID), {}).setdefault(str(ds.StudyInstanceUID), {})
        series = study.setdefault(str(ds.SeriesInstanceUID), {})
        series[str(ds.SOPInstanceUID)] = str(ds.SOPClassUID)
    return tree


class SidicomData(NamedTuple):
    tree: Tree
    """What was stored for the two patients the SIDICOM QR query matches."""
    xray_study: str
    """MUELLER^HANS's study: two CT images, a JPEG secondary capture and a Raw Data object."""
    report_study: str
    """His second study: a CT image and a Basic Text SR that SIDICOM QR cannot receive."""
    jpeg: Path
    sr: str


def study_keys(patient_id: str, name: str, date: str) -> dict[str, Any]:
    """The patient and study attributes that every instance of a new study carries."""
    return dict(
        PatientID=patient_id,
        PatientName=name,
        PatientBirthDate="19600101",
        StudyInstanceUID=generate_uid(),
        StudyDate=date,
        StudyTime="101500",
        AccessionNumber=f"A{date}",
        StudyID="1",
    )


def load_sidicom_data(server: RunningServer, folder: Path) -> SidicomData:
    """Store SIDICOM QR's patients in ``server`` as the modalities would have sent them."""
    xray = study_keys("SIR001", "MUELLER^HANS", "20150310")
    report = study_keys("SIR001", "MUELLER^HANS", "20151120")
    ct_series = generate_uid()
    raw = non_image(RAW_DATA, "OT", SeriesNumber=3, **xray)
    del raw.InstanceNumber  # to be returned zero-length at IMAGE level, never dropped
    sr = non_image(BASIC_TEXT_SR, "SR", SeriesNumber=2, **report)
    datasets = [
        ct_dataset(series=ct_series, SeriesNumber=1, InstanceNumber=1, **xray),
        ct_dataset(series=ct_series, SeriesNumber=1, InstanceNumber=2, **xray),
        raw,
        ct_dataset(SeriesNumber=1, **report),
        sr,
        ct_dataset(sop_class=IO, **study_keys("SIR002", "MULLER^ANNA", "20160105")),
        ct_dataset(**study_keys("SIR003", "SMITH^JOHN", "20160105")),
    ]
    files = [save(ds, folder / f"{ds.SOPInstanceUID}.dcm") for ds in datasets]
    jpeg = jpeg_instance(folder, SeriesInstanceUID=generate_uid(), SeriesNumber=2, **xray)
    files.append(jpeg)
    responses = send_files(server.port, files)
    assert all(r is not None and r.Status == 0 for r in responses.values())
    tree = tree_of(files)
    del tree["SIR003"]  # SMITH^JOHN does not match the query
    study_uids = str(xray["StudyInstanceUID"]), str(report["StudyInstanceUID"])
    return SidicomData(tree, *study_uids, jpeg, str(sr.SOPInstanceUID))


@pytest.fixture
def sidicom_receiver() -> Iterator[SidicomReceiver]:
    receiver = SidicomReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def sidicom_archive(
    server_factory: ServerFactory, sidicom_receiver: SidicomReceiver, tmp_path: Path
) -> tuple[RunningServer, SidicomData]:
    """An archive that knows SIDICOM QR's incoming AE, loaded with its patients."""
    remote = {"ae_title": SIDICOM_AE, "host": "127.0.0.1", "port": sidicom_receiver.port}
    server = server_factory(remotes=[remote])
    folder = tmp_path / "sidicom"
    folder.mkdir()
    return server, load_sidicom_data(server, folder)


class Walk(NamedTuple):
    tree: Tree
    queries: list[tuple[str, dict[str, str], int]]
    """Every C-FIND of the walk: its level, its keys and its final status."""
    responses: list[tuple[str, dict[str, str], Dataset]]
    """Every pending response, with the level and the keys that asked for it."""


def sidicom_walk(port: int) -> Walk:
    """Expand the whole tree as SIDICOM QR does: patients by name, then one level deeper
    for each result, down to the images, with the unique keys of every level above."""
    walk = Walk({}, [], [])
    assoc = sidicom_associate(port)

    def find_level(level: str, **keys: str) -> list[Dataset]:
        matches, final = find_on(assoc, PATIENT_ROOT_FIND, identifier(level, **keys))
        walk.queries.append((level, keys, final))
        walk.responses.extend((level, keys, match) for match in matches)
        return matches

    try:
        for patient in find_level(
            "PATIENT", PatientName="MU*LLER^*", PatientID="", PatientBirthDate="", PatientSex=""
        ):
            patient_id = str(patient.PatientID)
            studies = walk.tree.setdefault(patient_id, {})
            for study in find_level(
                "STUDY", PatientID=patient_id, StudyInstanceUID="", **dict.fromkeys(STUDY_KEYS, "")
            ):
                study_uid = str(study.StudyInstanceUID)
                series_keys = dict(PatientID=patient_id, StudyInstanceUID=study_uid)
                all_series = studies.setdefault(study_uid, {})
                for series in find_level(
                    "SERIES", **series_keys, SeriesInstanceUID="", Modality="", SeriesNumber=""
                ):
                    series_uid = str(series.SeriesInstanceUID)
                    images = find_level(
                        "IMAGE",
                        **series_keys,
                        SeriesInstanceUID=series_uid,
                        SOPInstanceUID="",
                        SOPClassUID="",
                        InstanceNumber="",
                    )
                    all_series[series_uid] = {
                        str(image.SOPInstanceUID): str(image.SOPClassUID) for image in images
                    }
    finally:
        assoc.release()
    return walk


@pytest.fixture
def walked(sidicom_archive: tuple[RunningServer, SidicomData]) -> tuple[SidicomData, Walk]:
    server, data = sidicom_archive
    return data, sidicom_walk(server.port)


def test_sidicom_walks_the_tree_on_one_association(walked: tuple[SidicomData, Walk]) -> None:
    data, walk = walked
    assert walk.tree == data.tree
    levels = Counter(level for level, _, _ in walk.queries)  # twelve C-FINDs on one association
    assert levels == {"PATIENT": 1, "STUDY": 2, "SERIES": 3, "IMAGE": 6}
    assert {final for _, _, final in walk.queries} == {0x0000}
    for level, keys, response in walk.responses:
        assert response.QueryRetrieveLevel == level
        returned = {element.keyword: element for element in response}
        assert set(keys) <= set(returned), f"requested keys dropped at {level}"
        for keyword, value in keys.items():
            if value and not set(value) & set("*?"):  # a single value comes back as sent
                assert str(returned[keyword].value) == value
    # What the archive does not hold comes back zero-length: descriptions and referring
    # physicians were never sent, and the Raw Data object has no Instance Number.
    studies = [r for level, _, r in walk.responses if level == "STUDY"]
    assert all(r.StudyDescription == "" and r.ReferringPhysicianName == "" for r in studies)
    images = [r for level, _, r in walk.responses if level == "IMAGE"]
    assert {str(r.SOPClassUID) for r in images if r.InstanceNumber is None} == {RAW_DATA}


def test_sidicom_find_responses_name_the_retrieve_ae_title(
    walked: tuple[SidicomData, Walk],
) -> None:
    """PS3.4 C.4.1.1.3.2: Retrieve AE Title is in every response, asked for or not."""
    _, walk = walked
    levels = {level for level, _, _ in walk.responses}
    assert levels == {"PATIENT", "STUDY", "SERIES", "IMAGE"}
    missing = sorted({level for level, _, r in walk.responses if "RetrieveAETitle" not in r})
    assert missing == [], f"no Retrieve AE Title at {missing}"
    assert {r.RetrieveAETitle for _, _, r in walk.responses} == {"PACSNODE"}


class Move(NamedTuple):
    statuses: list[Dataset]
    """Every C-MOVE response, the final one last."""
    final_identifier: Dataset | None
    """The final response's identifier: the Failed SOP Instance UID List, if any."""
    arrived: float
    """When the final response arrived (time.monotonic)."""


def sidicom_move(port: int, study_uid: str) -> Move:
    """Patient Root C-MOVE of a study of SIR001 to SIDICOM QR's incoming AE title."""
    assoc = sidicom_associate(port)
    query = identifier("STUDY", PatientID="SIR001", StudyInstanceUID=study_uid)
    statuses: list[Dataset] = []
    final_identifier = None
    try:
        for status, found in assoc.send_c_move(query, SIDICOM_AE, PATIENT_ROOT_MOVE):
            assert status is not None and "Status" in status, "no C-MOVE response"
            statuses.append(status)
            final_identifier = found
        return Move(statuses, final_identifier, time.monotonic())
    finally:
        assoc.release()


def check_move_protocol(move: Move, receiver: SidicomReceiver, total: int) -> None:
    """Checklist items 17, 21, 23, 24 and 25: how the sub-operations were carried out."""
    (incoming,) = receiver.associations  # one storage sub-association for the whole move
    assert incoming.calling == "PACSNODE"
    assert incoming.called == SIDICOM_AE  # exactly, embedded space included
    for sop_class, syntaxes in incoming.proposed.items():
        assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian} <= set(syntaxes), sop_class
    for pending in move.statuses[:-1]:
        assert pending.Status == 0xFF00
        counts = [
            pending.NumberOfRemainingSuboperations,
            pending.NumberOfCompletedSuboperations,
            pending.NumberOfFailedSuboperations,
            pending.NumberOfWarningSuboperations,
        ]
        assert sum(counts) == total
    (released,) = receiver.released_at
    assert released < move.arrived, "the final response came before the sub-association ended"


def test_sidicom_moves_a_study_with_jpeg_and_raw_data(
    sidicom_archive: tuple[RunningServer, SidicomData], sidicom_receiver: SidicomReceiver
) -> None:
    server, data = sidicom_archive
    original = dcmread(data.jpeg)
    assert original.file_meta.TransferSyntaxUID == JPEGBaseline8Bit  # stored as sent
    move = sidicom_move(server.port, data.xray_study)
    final = move.statuses[-1]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 4
    assert final.NumberOfFailedSuboperations == 0
    check_move_protocol(move, sidicom_receiver, total=4)
    study = data.tree["SIR001"][data.xray_study]
    assert set(sidicom_receiver.received) == {uid for series in study.values() for uid in series}
    uncompressed = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}
    assert set(sidicom_receiver.syntaxes.values()) <= uncompressed
    jpeg = sidicom_receiver.received[str(original.SOPInstanceUID)]  # same instance UID
    assert (jpeg.pixel_array == original.pixel_array).all()  # as pylibjpeg decodes it
    assert jpeg.LossyImageCompression == "01"  # still says it was lossy once
    raw = next(ds for ds in sidicom_receiver.received.values() if ds.SOPClassUID == RAW_DATA)
    assert "PixelData" not in raw


def test_sidicom_move_fails_only_the_sr_it_cannot_receive(
    sidicom_archive: tuple[RunningServer, SidicomData], sidicom_receiver: SidicomReceiver
) -> None:
    server, data = sidicom_archive
    move = sidicom_move(server.port, data.report_study)
    final = move.statuses[-1]
    assert final.Status == 0xB000
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfFailedSuboperations == 1
    assert move.final_identifier is not None
    assert str(move.final_identifier.FailedSOPInstanceUIDList) == data.sr
    check_move_protocol(move, sidicom_receiver, total=2)
    study = data.tree["SIR001"][data.report_study]
    assert set(sidicom_receiver.received) == {
        uid for series in study.values() for uid in series
    } - {data.sr}


def test_sidicom_move_to_an_unknown_destination_is_a801(
    sidicom_archive: tuple[RunningServer, SidicomData], sidicom_receiver: SidicomReceiver
) -> None:
    server, data = sidicom_archive
    assoc = sidicom_associate(server.port)
    query = identifier("STUDY", PatientID="SIR001", StudyInstanceUID=data.xray_study)
    statuses = [int(s.Status) for s, _ in assoc.send_c_move(query, "SIDICOM XX", PATIENT_ROOT_MOVE)]
    assoc.release()
    assert statuses == [0xA801]
    assert sidicom_receiver.associations == []  # no connection attempted anywhere
