"""Attribute coercion (digest-003 items 22-26; PS3.3 C.12.1), on SQLite and PostgreSQL:
per-sender rules and character set override on receipt, the character set check, the
French clearing, and per-destination rules on the way out.

The server checks character sets and runs for a tenant in France. LATIN sends Latin-1
without saying so: its rule declares ISO_IR 100 and rewrites a few attributes. DEST is
sent its Patient IDs prefixed; PLAINDEST gets everything as stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, ct_dataset, dataset_bytes, free_port, save, stored_path
from dataset_compare import differences
from module_servers import BACKENDS, module_server
from peers import associate, dcmtk, send_files
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from test_stow import dicom_parts, multipart, part10, post

from pacsnode.config import ConfigError, load_settings

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
COERCIONS = [
    {
        "name": "latin-sender",
        "direction": "receive",
        "ae_titles": ["LATIN"],
        "character_set": "ISO_IR 100",
        "character_set_mode": "override",
        "copy": {"OtherPatientIDs": "PatientID"},
        "set": {"InstitutionName": "LATIN HOSPITAL"},
        "prefix": {"AccessionNumber": "L-"},
        "map": {"Modality": {"DX": "CR"}},
        "remove": ["StationName"],
    },
    {"name": "to-dest", "direction": "send", "ae_titles": ["DEST"], "prefix": {"PatientID": "X-"}},
]


class Keeper:
    """A Storage SCP keeping each object as received and as its bytes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: dict[str, tuple[Dataset, bytes]] = {}
        ae = AE(ae_title="KEEPER")
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, [ExplicitVRLittleEndian])
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        raw = event.encoded_dataset(include_meta=False)
        self.received[str(event.request.AffectedSOPInstanceUID)] = (event.dataset, raw)
        return 0x0000


@dataclass
class Coercing:
    server: RunningServer
    keeper: Keeper
    latin: Path
    """What LATIN sent: Latin-1 text, no Specific Character Set."""
    plain: Path
    """What PLAIN sent: ASCII, with the two attributes France clears."""


@pytest.fixture(scope="module", params=BACKENDS)
def coercing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Coercing]:
    root = tmp_path_factory.mktemp(f"coercion-{request.param}")
    keeper = Keeper()
    remotes = [
        {"ae_title": "DEST", "host": "127.0.0.1", "port": keeper.port},
        {"ae_title": "PLAINDEST", "host": "127.0.0.1", "port": keeper.port},
    ]
    server_settings = {"check_character_set": True, "country": "FR"}
    try:
        with module_server(
            root, request.param, server_settings, remotes, {"coercion": COERCIONS}
        ) as server:
            latin = ct_dataset(
                patient_id="LAT1",
                patient_name="Müller^Jürgen",
                modality="DX",
                InstitutionName="Hôpital Saint-Éloi",
                StationName="ST1",
            )
            assert "SpecificCharacterSet" not in latin
            latin_path = save(latin, root / "latin.dcm")
            assert b"M\xfcller" in latin_path.read_bytes()  # Latin-1, undeclared
            plain = ct_dataset(
                patient_id="FR1", EthnicGroup="ETHNOS", PatientReligiousPreference="FAITHX"
            )
            plain_path = save(plain, root / "plain.dcm")
            yield Coercing(server, keeper, latin_path, plain_path)
    finally:
        keeper.server.shutdown()


def store(server: RunningServer, path: Path, calling_ae: str) -> Dataset:
    return send_files(server.port, [path], calling_ae=calling_ae)[path]


def find_studies(port: int, **keys: str) -> list[Dataset]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    assoc = associate(port, [(STUDY_FIND, [ExplicitVRLittleEndian])])
    found = [a for s, a in assoc.send_c_find(identifier, STUDY_FIND) if s.Status == 0xFF00]
    assoc.release()
    return found


def test_a_latin1_sender_with_an_override_is_stored_and_found_in_utf8(coercing: Coercing) -> None:
    answer = store(coercing.server, coercing.latin, "LATIN")
    assert answer.Status == 0xB000  # stored, with coerced elements (PS3.4 B.2.3)
    [match] = find_studies(coercing.server.port, PatientName="MÜLLER*", InstitutionName="")
    assert match.SpecificCharacterSet == "ISO_IR 192"
    assert str(match.PatientName) == "Müller^Jürgen"
    qido = httpx.get(
        f"{coercing.server.url}/dicom-web/studies", params={"PatientName": "müller*"}
    ).json()
    assert [q["00100010"]["Value"][0]["Alphabetic"] for q in qido] == ["Müller^Jürgen"]


def test_the_stored_object_is_the_coerced_one_with_the_values_it_replaced(
    coercing: Coercing,
) -> None:
    sent = dcmread(coercing.latin)
    stored_file = stored_path(coercing.server, str(sent.SOPInstanceUID))
    stored = dcmread(stored_file)
    assert stored.SpecificCharacterSet == "ISO_IR 100"
    assert (stored.InstitutionName, stored.AccessionNumber) == ("LATIN HOSPITAL", "L-ACC001")
    assert (stored.Modality, stored.OtherPatientIDs) == ("CR", "LAT1")
    assert "StationName" not in stored
    [item] = stored.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "COERCE"
    assert (item.SourceOfPreviousValues, item.ModifyingSystem) == ("LATIN", "PACSNODE")
    [previous] = item.ModifiedAttributesSequence
    assert previous.InstitutionName == "Hôpital Saint-Éloi"
    assert (previous.AccessionNumber, previous.Modality, previous.StationName) == (
        "ACC001",
        "DX",
        "ST1",
    )
    assert previous.SpecificCharacterSet in (None, "")  # there was none
    assert previous.OtherPatientIDs in (None, "")
    # Every other element is what LATIN sent, decoded in the declared Latin-1.
    coerced = {0x00080005, 0x00080050, 0x00080060, 0x00080080, 0x00081010, 0x00101000}
    found = differences(sent, stored, frozenset(coerced))
    assert sorted(found) == [
        "(0008,0005) only in the result",
        "(0008,1010) only in the source",
        "(0010,1000) only in the result",
        "(0400,0561) only in the result",
    ]
    dumped = dcmtk("dcmdump", "+U8", str(stored_file))
    assert dumped.returncode == 0, dumped.stderr
    assert "(0400,0565) CS [COERCE]" in dumped.stdout
    assert "(0008,0080) LO [Hôpital Saint-Éloi]" in dumped.stdout  # in the item
    assert "(0008,0080) LO [LATIN HOSPITAL]" in dumped.stdout
    assert "(0010,0010) PN [Müller^Jürgen]" in dumped.stdout


def test_coercion_is_audited_with_the_new_values(coercing: Coercing) -> None:
    study = str(dcmread(coercing.latin).StudyInstanceUID)
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        params = {"event": "110103", "study": study}
        found = httpx.get(f"{coercing.server.url}/api/audit", params=params).json()
        time.sleep(0.1)
    [message] = found
    assert (message["action"], message["user"]) == ("U", "LATIN")
    assert 'type="InstitutionName"' in str(message["xml"])


def bad(name: bytes, charset: str | None) -> Dataset:
    ds = ct_dataset(patient_id="BAD1")
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds["PatientName"] = DataElement(0x00100010, "PN", name)
    return ds


@pytest.mark.filterwarnings("ignore:Unknown encoding")  # pydicom, writing the bad one
@pytest.mark.parametrize(
    ("name", "charset"),
    [
        ("Müller^Jürgen".encode("latin-1"), None),  # Latin-1 bytes, nothing declared
        ("Müller^Jürgen".encode("latin-1"), "ISO_IR 192"),  # declared UTF-8, is not
        (b"MULLER^JURGEN", "ISO_IR 999"),  # no such character set
    ],
)
def test_a_contradicting_character_set_is_refused_without_an_override(
    coercing: Coercing, tmp_path: Path, name: bytes, charset: str | None
) -> None:
    ds = bad(name, charset)
    path = save(ds, tmp_path / "bad.dcm")
    answer = store(coercing.server, path, "PLAIN")
    assert answer.Status == 0xC000
    assert "Specific Character Set" in answer.ErrorComment
    stow = post(coercing.server, multipart(dicom_parts(part10(ds))))
    assert stow.status_code == 409
    uid = str(ds.SOPInstanceUID)
    assert httpx.get(f"{coercing.server.url}/api/instances/{uid}").status_code == 404


def test_france_clears_ethnic_group_and_religious_preference(coercing: Coercing) -> None:
    assert store(coercing.server, coercing.plain, "PLAIN").Status == 0xB000
    sent = dcmread(coercing.plain)
    stored = stored_path(coercing.server, str(sent.SOPInstanceUID))
    content = stored.read_bytes()
    assert b"ETHNOS" not in content and b"FAITHX" not in content  # not even kept aside
    identifier = {"StudyInstanceUID": str(sent.StudyInstanceUID), "EthnicGroup": ""}
    [match] = find_studies(coercing.server.port, **identifier)
    assert match.EthnicGroup in (None, "")
    url = f"{coercing.server.url}/dicom-web/studies/{sent.StudyInstanceUID}/metadata"
    [document] = httpx.get(url).json()
    assert "00102160" not in document and "001021F0" not in document


def move_study(coercing: Coercing, study: str, destination: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    assoc = associate(coercing.server.port, [(STUDY_MOVE, [ExplicitVRLittleEndian])])
    responses = [s for s, _ in assoc.send_c_move(identifier, destination, STUDY_MOVE)]
    assoc.release()
    return responses[-1]


def test_send_rules_apply_to_their_destination_only(coercing: Coercing, tmp_path: Path) -> None:
    ds = ct_dataset(patient_id="OUT1", study=generate_uid())
    path = save(ds, tmp_path / "out.dcm")
    assert store(coercing.server, path, "PLAIN").Status == 0x0000  # nothing to clear
    uid, study = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
    coercing.keeper.received.clear()
    assert move_study(coercing, study, "DEST").Status == 0x0000
    sent, _raw = coercing.keeper.received.pop(uid)
    assert sent.PatientID == "X-OUT1"
    [item] = sent.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "COERCE"
    assert item.ModifiedAttributesSequence[0].PatientID == "OUT1"
    # To another AE, and with no edit in the index, the stored bytes go out as they are.
    assert move_study(coercing, study, "PLAINDEST").Status == 0x0000
    _dataset, raw = coercing.keeper.received.pop(uid)
    assert raw == dataset_bytes(stored_path(coercing.server, uid))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[coercion]]\nname = "a"\ndirection = "receive"\nset = { PatientNam = "X" }\n',
            "PatientNam is not a DICOM keyword",
        ),
        (
            '[[coercion]]\nname = "a"\ndirection = "send"\nremove = ["SOPInstanceUID"]\n',
            "SOPInstanceUID cannot be coerced",
        ),
        (
            '[[coercion]]\nname = "a"\ndirection = "send"\ncharacter_set = "ISO_IR 100"\n',
            "character_set applies to what is received only",
        ),
        (
            '[[coercion]]\nname = "a"\ndirection = "both"\n',
            "direction: 'both' is not one of 'receive', 'send'",
        ),
        ("[server]\nissuer_heuristic = true\n", r"needs the default \[\[authority\]\]"),
        (
            '[[remote_ae]]\nae_title = "A"\nhost = "h"\nport = 104\nfallback_authority = 3\n',
            r"fallback_authority: 3 is not an \[\[authority\]\] id",
        ),
        ('[server]\ncountry = "fr"\n', "'fr' is not a two-letter country code"),
    ],
)
def test_identity_and_coercion_settings_are_checked(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "pacsnode.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})
