"""The conformance statement against the running server it describes: every SOP class
and transfer syntax it lists as accepted is proposed to that server, alone in its own
context, and must come back accepted with exactly that syntax and the roles listed;
what it does not list is refused. Over ``GET /api/conformance`` (JSON, Markdown, HTML,
read by a viewer) and ``pacsnode conformance``, for the default catalog and for one
restricted by ``storage_sop_classes`` and ``storage_transfer_syntaxes``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, make_server
from peers import pacsnode_cli

from pacsnode.archive.deidentify import SAFE_PRIVATE_TABLE
from pacsnode.archive.uids import STORAGE_SOP_CLASSES, STORAGE_TRANSFER_SYNTAXES
from pacsnode.config import ConfigError, load_settings
from pacsnode.net.pdu import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTANCE,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
)
from pacsnode.net.requestor import MAX_CONTEXTS, Endpoint, LocalAE, Proposal, associate

ADMIN, VIEWER = ("root", "root-secret"), ("wall", "wall-secret")
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
RAW = "1.2.840.10008.5.1.4.1.1.66"
ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
JPEG_LS, J2K_LOSSLESS = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"
MADE_UP_CLASS = "1.2.826.0.1.3680043.8.498.999.1"
MADE_UP_SYNTAX = "1.2.826.0.1.3680043.8.498.999.2"
RESTRICTED = {
    "storage_sop_classes": [CT, MR, RAW],
    "storage_transfer_syntaxes": [ELE, ILE, JPEG_LS],
}


IDENTITY: dict[str, Any] = {
    "authority": [{"id": 0, "issuer": "MAIN"}, {"id": 1, "issuer": "CLINICS"}],
    "coercion": [
        {
            "name": "latin-clinic",
            "direction": "receive",
            "ae_titles": ["CLINIC"],
            "character_set": "ISO_IR 100",
            "set": {"InstitutionName": "CLINIC A"},
        },
        {"name": "prefixed", "direction": "send", "prefix": {"AccessionNumber": "MAIN-"}},
    ],
}
"""Assigning authorities and coercion rules, for the restricted node."""


def _server(
    base: Path, name: str, clinic: dict[str, Any] | None = None, **settings: Any
) -> RunningServer:
    users = [":".join(ADMIN), f"{VIEWER[0]}:viewer:{VIEWER[1]}"]
    remotes = [
        {
            "ae_title": "CLINIC",
            "host": "127.0.0.1",
            "port": 4242,
            "allowed": ["echo", "find"],
            "visible": {"InstitutionName": "CLINIC A*"},
            "duplicate_policy": "overwrite",
            **(clinic or {}),
        }
    ]
    return make_server(base, name, remotes=remotes, http_auth="basic", http_users=users, **settings)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = _server(tmp_path_factory.mktemp("conformance"), "default")
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("restricted")
    running = _server(
        base,
        "restricted",
        clinic={"fallback_authority": 1},
        sections=IDENTITY,
        issuer_heuristic=True,
        country="FR",
        transfer_syntax_choice="ours",
        **RESTRICTED,
    )
    try:
        yield running
    finally:
        running.kill()


def statement(server: RunningServer, auth: tuple[str, str] = VIEWER, **params: str) -> Any:
    answer = httpx.get(f"{server.url}/api/conformance", params=params, auth=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json() if not params else answer


def accepted_pairs(document: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (SOP class, transfer syntax, our roles) the statement lists as accepted."""
    sets = document["transfer_syntax_sets"]
    return [
        (context["sop_class"]["uid"], syntax["uid"], tuple(context["roles"]))
        for context in document["accepted"]
        for syntax in sets[context["transfer_syntaxes"]]
    ]


def negotiate(port: int, proposals: Sequence[Proposal]) -> list[tuple[int, str, bool, bool]]:
    """Each proposal's result, accepted syntax and roles granted to us, proposing
    ``MAX_CONTEXTS`` per association."""
    local = LocalAE("CONFORMANCE", "1.2.3.4", "TEST")
    outcomes: list[tuple[int, str, bool, bool]] = []
    for start in range(0, len(proposals), MAX_CONTEXTS):
        batch = proposals[start : start + MAX_CONTEXTS]
        association = associate(local, Endpoint("127.0.0.1", port, "PACSNODE"), batch)
        try:
            results = {result.id: result for result in association.accept.results}
            for number in range(len(batch)):
                result = results[1 + 2 * number]
                context = association.contexts.get(result.id)
                granted = (context.requestor_scu, context.requestor_scp) if context else (0, 0)
                outcomes.append((result.result, result.transfer_syntax, *map(bool, granted)))
        finally:
            association.release()
    return outcomes


def assert_all_accepted(server: RunningServer, document: dict[str, Any]) -> int:
    pairs = accepted_pairs(document)
    proposals = [
        Proposal(uid, (syntax,), scu="SCP" in roles, scp="SCU" in roles)
        for uid, syntax, roles in pairs
    ]
    outcomes = negotiate(server.port, proposals)
    for (uid, syntax, roles), (result, chosen, as_scu, as_scp) in zip(pairs, outcomes, strict=True):
        assert (result, chosen) == (ACCEPTANCE, syntax), f"{uid} in {syntax}: result {result}"
        assert (as_scu, as_scp) == ("SCP" in roles, "SCU" in roles), f"{uid}: roles"
    return len(pairs)


def test_every_listed_class_and_syntax_is_accepted_as_listed(node: RunningServer) -> None:
    document = statement(node)
    count = assert_all_accepted(node, document)
    storage = [c for c in document["accepted"] if c["transfer_syntaxes"] == "storage"]
    assert len(storage) == len(STORAGE_SOP_CLASSES) == 226
    assert [ts["uid"] for ts in document["transfer_syntax_sets"]["storage"]] == list(
        STORAGE_TRANSFER_SYNTAXES
    )
    assert count == 226 * 38 + 13 * 3
    listed = {c["sop_class"]["uid"]: c for c in document["accepted"]}
    commitment = listed["1.2.840.10008.1.20.1"]
    assert commitment["roles"] == ["SCP", "SCU"]
    assert "relational" in listed["1.2.840.10008.5.1.4.1.2.2.1"]["extended_negotiation"]
    names = {c["sop_class"]["uid"]: c["sop_class"]["name"] for c in document["accepted"]}
    assert names[CT] == "CT Image Storage"
    assert names["1.3.12.2.1107.5.9.1"] == "Siemens CSA Non-Image"  # not in pydicom's list


def test_what_it_does_not_list_is_refused(node: RunningServer) -> None:
    outcomes = negotiate(
        node.port,
        [
            Proposal(MADE_UP_CLASS, (ELE,)),
            Proposal(CT, (MADE_UP_SYNTAX,)),
            Proposal("1.2.840.10008.1.1", (JPEG_LS,)),  # Verification is uncompressed only
            Proposal("1.2.840.10008.5.1.4.33", (ELE,)),  # IAN: we are only its SCU
            Proposal(CT, (ELE,)),
        ],
    )
    results = [outcome[0] for outcome in outcomes]
    assert results == [
        ABSTRACT_SYNTAX_NOT_SUPPORTED,
        TRANSFER_SYNTAXES_NOT_SUPPORTED,
        TRANSFER_SYNTAXES_NOT_SUPPORTED,
        ABSTRACT_SYNTAX_NOT_SUPPORTED,
        ACCEPTANCE,
    ]
    document = statement(node)
    uids = {c["sop_class"]["uid"] for c in document["accepted"]}
    assert MADE_UP_CLASS not in uids and "1.2.840.10008.5.1.4.33" not in uids
    ian = [s for s in document["services"] if s["sop_class"]["uid"] == "1.2.840.10008.5.1.4.33"]
    assert (ian[0]["scu"], ian[0]["scp"]) == (True, False)


def test_a_restricted_catalog_is_what_the_statement_lists(restricted: RunningServer) -> None:
    document = statement(restricted)
    storage = [c["sop_class"]["uid"] for c in document["accepted"] if c["roles"] == ["SCP", "SCU"]]
    assert sorted(storage) == sorted([CT, MR, RAW, "1.2.840.10008.1.20.1"])
    syntaxes = [ts["uid"] for ts in document["transfer_syntax_sets"]["storage"]]
    assert syntaxes == [ELE, ILE, JPEG_LS]  # in our order
    assert assert_all_accepted(restricted, document) == 3 * 3 + 13 * 3
    unlisted_class = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture: known, not allowed
    outcomes = negotiate(
        restricted.port,
        [Proposal(unlisted_class, (ELE,)), Proposal(CT, (J2K_LOSSLESS,)), Proposal(CT, (ELE,))],
    )
    assert [o[0] for o in outcomes] == [
        ABSTRACT_SYNTAX_NOT_SUPPORTED,
        TRANSFER_SYNTAXES_NOT_SUPPORTED,
        ACCEPTANCE,
    ]
    rules = {(d["subject"], d["rule"]) for d in document["differences"]}
    assert ("storage", "only the 3 storage SOP classes of storage_sop_classes") in rules
    assert (
        "storage",
        "storage contexts accept only Explicit VR Little Endian, Implicit VR Little Endian, "
        "JPEG-LS Lossless Image Compression",
    ) in rules
    assert ("transfer syntax", "our order wins over the proposer's") in rules
    assert (
        "coercion",
        "objects are coerced before they are stored and the C-STORE answered B000: "
        "latin-clinic (CLINIC): InstitutionName set to 'CLINIC A', Specific Character Set "
        "ISO_IR 100 if none; country FR: EthnicGroup, PatientReligiousPreference removed "
        "from every object; the values replaced are kept in Original Attributes Sequence "
        "(0400,0561)",
    ) in rules
    assert (
        "coercion on send",
        "prefixed (every peer and door): AccessionNumber prefixed with 'MAIN-'",
    ) in rules
    assert (
        "Issuer of Patient ID CLINIC",
        "what it sends and asks without an issuer is authority 1's",
    ) in rules
    identity = dict(rules)["Issuer of Patient ID"]
    assert "(authorities: 0 MAIN, 1 CLINICS)" in identity and "matching #.*," in identity
    annex = [s for s in document["services"] if s["group"] == "Transfer"]
    assert sum(s["scp"] for s in annex) == 3 and all(s["scu"] for s in annex)


def test_the_configuration_rules_and_policies(node: RunningServer) -> None:
    document = statement(node)
    rules = {(d["subject"], d["rule"]) for d in document["differences"]}
    assert ("access CLINIC", "may use only echo, find") in rules
    assert ("visibility CLINIC", "sees only studies matching InstitutionName = CLINIC A*") in rules
    assert (
        "duplicates CLINIC",
        "a SOP Instance UID received again replaces the copy held",
    ) in rules
    assert (
        "duplicates",
        "a SOP Instance UID received again is acknowledged and the first copy kept",
    ) in rules
    table = SAFE_PRIVATE_TABLE.read_text().splitlines()
    rows = [line for line in table if line and not line.startswith("#")]
    assert len(document["deidentification"]["safe_private"]) == len(rows) > 400
    coercion = dict(rules)["coercion"]
    assert coercion.startswith("none: objects are stored byte for byte as received")
    identity = "a patient is its Patient ID with the issuer its objects name"
    assert ("Issuer of Patient ID", identity) in rules
    association = document["association"]
    assert association["max_pdu_receive"] == 1048576
    assert association["max_associations"] == 30
    assert association["transfer_syntax_choice"].startswith("the first transfer syntax in the pro")
    keys = {(k["level"], k["keyword"]): k for k in document["query_keys"]}
    assert keys["PATIENT", "PatientName"]["matching"] == ["single value", "wild card", "universal"]
    assert keys["PATIENT", "PatientName"]["case_insensitive"] is True
    assert keys["STUDY", "StudyDate"]["matching"] == ["single value", "range", "universal"]
    assert keys["STUDY", "StudyInstanceUID"]["unique"] is True
    assert keys["STUDY", "StudyInstanceUID"]["matching"][1] == "list of UID"
    assert keys["STUDY", "NumberOfStudyRelatedInstances"]["matching"] == []
    assert keys["SERIES", "RequestAttributesSequence"]["matching"] == ["sequence"]
    models = {m["name"]: m["levels"] for m in document["query_models"]}
    assert models == {
        "Patient Root": ["PATIENT", "STUDY", "SERIES", "IMAGE"],
        "Study Root": ["STUDY", "SERIES", "IMAGE"],
        "Patient/Study Only": ["PATIENT", "STUDY"],
    }
    assert "ISO_IR 192" in document["character_sets"]
    assert "TLS 1.3" in document["security"]["tls_versions"]
    assert "ECDHE-RSA-AES128-GCM-SHA256" in document["security"]["tls_ciphers"]
    assert not any("CBC" in name for name in document["security"]["tls_ciphers"])
    web = {(r["service"], r["method"], r["path"]) for r in document["dicomweb"]}
    assert ("STOW-RS", "POST", "/studies") in web and ("QIDO-RS", "GET", "/studies") in web
    assert {p["name"] for p in document["media"]} >= {"STD-GEN-CD", "STD-GEN-DVD-J2K"}
    clinic = [r for r in document["remote_aes"] if r["ae_title"] == "CLINIC"]
    assert clinic == [
        {
            "ae_title": "CLINIC",
            "host": "127.0.0.1",
            "port": 4242,
            "tls": False,
            "offers": [],
            "allowed": ["echo", "find"],
        }
    ]


def test_markdown_and_html_for_a_viewer(node: RunningServer) -> None:
    markdown = statement(node, format="md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    for heading in (
        "## 1 Introduction",
        "## 2 Networking",
        "#### 2.2.3 Association Initiation Policy",
        "#### 2.2.4 Association Acceptance Policy",
        "## 3 Media Interchange",
        "## 4 Support of Character Sets",
        "## 5 Security",
    ):
        assert heading in text
    assert "| CT Image Storage | 1.2.840.10008.5.1.4.1.1.2 | Yes | Yes |" in text
    assert "Retain Safe Private Option (113111)" in text.split("### 5.5 De-identification")[1]
    assert "| ELSCINT1 | (00E1,xx21) | DS | DLP |" in text.split("Annex D: Safe Private")[1]
    page = statement(node, format="html")
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!doctype html>")
    assert '<article class="conformance">' in page.text
    assert "<td>CT Image Storage</td>" in page.text
    bad = httpx.get(f"{node.url}/api/conformance", params={"format": "pdf"}, auth=VIEWER)
    assert bad.status_code == 400 and bad.json()["field"] == "format"
    anonymous = httpx.get(f"{node.url}/api/conformance")
    assert anonymous.status_code == 401


def test_the_command_prints_the_same_statement(node: RunningServer, tmp_path: Path) -> None:
    done = pacsnode_cli("conformance", "--format", "json", "--config", str(node.config_path))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    served = statement(node)
    for document in (printed, served):
        document.pop("generated")
    assert printed == served
    out = tmp_path / "statement.md"
    written = pacsnode_cli(
        "conformance", "-f", "md", "-o", str(out), "--config", str(node.config_path)
    )
    assert written.returncode == 0, written.stderr
    assert out.read_text().startswith("# DICOM Conformance Statement: pacsnode")
    wrong = pacsnode_cli("conformance", "-f", "pdf", "--config", str(node.config_path))
    assert wrong.returncode == 2 and "--format" in wrong.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"storage_sop_classes": [MADE_UP_CLASS]},
            f"--storage-sop-classes: '{MADE_UP_CLASS}' is not a storage SOP class pacsnode accepts",
        ),
        (
            {"storage_transfer_syntaxes": [ELE, ILE, MADE_UP_SYNTAX]},
            f"'{MADE_UP_SYNTAX}' is not a transfer syntax pacsnode accepts",
        ),
        (
            {"storage_transfer_syntaxes": [ELE]},
            "must include Implicit VR Little Endian",
        ),
    ],
)
def test_storage_allow_lists_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides=values, environ={})
