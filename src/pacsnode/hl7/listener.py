"""The HL7 door: an MLLP listener for orders (ORM^O01 to worklist items) and patient
updates (ADT^A08, A31 and A40 to the patient records of the archive).

It runs its own asyncio loop on a thread, beside the DIMSE and HTTP servers, and acts
on each message through the same cores as the REST API and the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import hl7
from hl7.mllp import HL7StreamReader, HL7StreamWriter, start_hl7_server
from starlette.concurrency import run_in_threadpool

from pacsnode import audit
from pacsnode.archive.patients import (
    AmbiguousPatient,
    PatientRecords,
    RecordError,
    RecordNotFound,
)
from pacsnode.archive.worklist import Worklist, WorklistError
from pacsnode.hl7.adt import MERGE, AdtError, PatientMessage, patient_message
from pacsnode.hl7.orders import (
    CANCEL,
    OrderError,
    acknowledgement,
    field_text,
    message_type,
    order,
    parse,
)

log = logging.getLogger("pacsnode.hl7")


class Hl7Listener:
    def __init__(self, worklist: Worklist, patients: PatientRecords, host: str, port: int) -> None:
        self.worklist = worklist
        self.patients = patients
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hl7", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_hl7_server(self._connected, self.host, self.port), self._loop
        )
        try:
            self._server = future.result(10)
        except OSError as exc:
            raise OSError(f"HL7 port {self.host}:{self.port}: {exc.strerror}") from exc
        log.info("HL7 listener on %s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.ident is not None:  # started
            self._thread.join(5)

    async def _connected(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else ""
        try:
            while not reader.at_eof():
                block = await reader.readblock()
                text = block.decode("utf-8", errors="replace")
                reply = await run_in_threadpool(self.handle, text, address)
                writer.writeblock(reply.encode("utf-8"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the sender hung up between messages
        except Exception:
            log.exception("HL7 connection from %s failed", peer)
        finally:
            writer.close()

    def handle(self, text: str, address: str = "") -> str:
        """Act on one message; the ACK tells the sender whether it was taken."""
        try:
            message = parse(text)
        except OrderError as exc:
            log.warning("HL7 message refused: %s", exc)
            return acknowledgement(text, "AR", str(exc))
        kind = message_type(message)
        if kind.startswith("ADT^"):
            sender = audit.Actor(field_text(message, "MSH", 3) or "HL7", address, requestor=True)
            return self._patient(text, message, kind[4:], sender)
        return self._order(text, message)

    def _order(self, text: str, message: hl7.Message) -> str:
        try:
            received = order(message)
        except OrderError as exc:
            log.warning("HL7 message refused: %s", exc)
            return acknowledgement(text, "AR", str(exc))
        try:
            if received.control in CANCEL:
                removed = self.worklist.delete_order(received.placer_number)
                log.info("order %s cancelled: %d items", received.placer_number, removed)
            else:
                item = self.worklist.schedule_order(received.placer_number, received.item)
                log.info("order %s scheduled as item %d", received.placer_number, item.pk)
        except WorklistError as exc:
            return acknowledgement(text, "AR", str(exc))
        except Exception as exc:
            log.exception("order %s failed", received.placer_number)
            return acknowledgement(text, "AE", f"processing failure: {exc}")
        return acknowledgement(text, "AA")

    def _patient(self, text: str, message: hl7.Message, event: str, sender: audit.Actor) -> str:
        try:
            asked = patient_message(message, event)
            done = self._apply(asked, sender)
        except (AdtError, RecordError, AmbiguousPatient) as exc:
            log.warning("HL7 ADT^%s refused: %s", event, exc)
            return acknowledgement(text, "AR", str(exc))
        except RecordNotFound as exc:  # nothing of that patient here: nothing to change
            log.info("HL7 ADT^%s: %s", event, exc)
            return acknowledgement(text, "AA", str(exc))
        except Exception as exc:
            log.exception("HL7 ADT^%s failed", event)
            return acknowledgement(text, "AE", f"processing failure: {exc}")
        log.info("HL7 ADT^%s: %s", event, done)
        return acknowledgement(text, "AA")

    def _apply(self, asked: PatientMessage, sender: audit.Actor) -> str:
        key = self.patients.key(asked.patient_id, asked.issuer)
        if asked.event == MERGE:
            prior = self.patients.key(asked.prior_id, asked.prior_issuer)
            merged = self.patients.merge(prior, key, sender)
            return f"patient {prior} merged into {key}: {merged.studies} studies"
        if not asked.changes:
            return f"nothing to change for patient {key}"
        updated = self.patients.update_patient(key, asked.changes, sender)
        return f"patient {key} updated: {updated.changed or 'no change'}"
