"""HL7 v2 orders over MLLP become worklist items that modalities find by C-FIND."""

from __future__ import annotations

import hl7
import pytest
from conftest import RunningServer, ServerFactory, free_port
from hl7.client import MLLPClient
from pydicom import Dataset
from test_worklist import query, worklist_query


def orm(control: str, placer: str, *, accession: str = "ACC77", modality: str = "CT") -> str:
    segments = [
        "MSH|^~\\&|RIS|HOSPITAL|PACSNODE|RADIOLOGY|20261124101500||ORM^O01|MSG"
        + placer
        + control
        + "|P|2.5",
        "PID|||HL7PAT^^^HOSP||KRAUSE^KARL^K||19650304|M",
        "PV1||O||||||D123^HOUSE^GREGORY|||||||||||V555",
        f"ORC|{control}|{placer}|F{placer}||SC||^^^202611241030",
        f"OBR|1|{placer}|F{placer}|71020^Chest two views^C4||||||||||||D9^WILSON^JAMES||"
        f"{accession}|RP{placer}|SPS{placer}|CT01|||{modality}",
    ]
    return "\r".join(segments)


HL7_PORT = free_port()


@pytest.fixture
def ris_server(server_factory: ServerFactory) -> RunningServer:
    return server_factory(hl7_port=HL7_PORT)


def send(message: str) -> hl7.Message:
    with MLLPClient("127.0.0.1", HL7_PORT) as client:
        reply = client.send_message(message)
    return hl7.parse(reply.decode())


def ack_code(reply: hl7.Message) -> str:
    return str(reply.segment("MSA")[1])


def everything() -> Dataset:
    identifier = query(
        top_PatientID="HL7PAT",
        ScheduledProcedureStepID="",
        ScheduledPerformingPhysicianName="",
    )
    identifier.ReferringPhysicianName = ""
    identifier.RequestedProcedureID = ""
    identifier.AdmissionID = ""
    return identifier


def test_a_new_order_is_scheduled(ris_server: RunningServer) -> None:
    reply = send(orm("NW", "P100"))
    assert ack_code(reply) == "AA"
    assert str(reply.segment("MSA")[2]) == "MSGP100NW"
    [item], final = worklist_query(ris_server.port, everything())
    assert final == 0
    assert (str(item.PatientName), item.PatientID) == ("KRAUSE^KARL^K", "HL7PAT")
    assert (item.AccessionNumber, item.RequestedProcedureID) == ("ACC77", "RPP100")
    assert item.RequestedProcedureDescription == "Chest two views"
    assert str(item.ReferringPhysicianName) == "HOUSE^GREGORY"
    assert item.AdmissionID == "V555"
    [step] = item.ScheduledProcedureStepSequence
    assert (step.Modality, step.ScheduledStationAETitle) == ("CT", "CT01")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261124",
        "1030",
    )
    assert step.ScheduledProcedureStepID == "SPSP100"


def test_a_changed_order_replaces_and_a_cancelled_one_goes(ris_server: RunningServer) -> None:
    assert ack_code(send(orm("NW", "P200"))) == "AA"
    assert ack_code(send(orm("XO", "P200", modality="MR"))) == "AA"
    items, _ = worklist_query(ris_server.port, everything())
    assert [i.ScheduledProcedureStepSequence[0].Modality for i in items] == ["MR"]
    assert ack_code(send(orm("CA", "P200"))) == "AA"
    assert worklist_query(ris_server.port, everything())[0] == []


def test_what_is_not_an_order_is_rejected(ris_server: RunningServer) -> None:
    admission = orm("NW", "P300").replace("ORM^O01", "ADT^A01")
    reply = send(admission)
    assert ack_code(reply) == "AR"
    assert "ADT^A01" in str(reply.segment("MSA")[3])
    no_placer = (
        orm("NW", "P301").replace("ORC|NW|P301|", "ORC|NW||").replace("OBR|1|P301|", "OBR|1||")
    )
    assert ack_code(send(no_placer)) == "AR"
    assert ack_code(send("this is not HL7")) == "AR"
    assert worklist_query(ris_server.port, everything())[0] == []
    assert "HL7 message refused" in ris_server.log()
