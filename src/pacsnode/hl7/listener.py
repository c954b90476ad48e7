"""The HL7 door: an MLLP listener that turns orders into worklist items.

It runs its own asyncio loop on a thread, beside the DIMSE and HTTP servers, and acts
on each message through the same worklist core as the REST API and the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from hl7.mllp import HL7StreamReader, HL7StreamWriter, start_hl7_server
from starlette.concurrency import run_in_threadpool

from pacsnode.archive.worklist import Worklist, WorklistError
from pacsnode.hl7.orders import CANCEL, OrderError, acknowledgement, order

log = logging.getLogger("pacsnode.hl7")


class OrderListener:
    def __init__(self, worklist: Worklist, host: str, port: int) -> None:
        self.worklist = worklist
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
        log.info("HL7 order listener on %s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.ident is not None:  # started
            self._thread.join(5)

    async def _connected(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while not reader.at_eof():
                block = await reader.readblock()
                text = block.decode("utf-8", errors="replace")
                reply = await run_in_threadpool(self.handle, text)
                writer.writeblock(reply.encode("utf-8"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the sender hung up between messages
        except Exception:
            log.exception("HL7 connection from %s failed", peer)
        finally:
            writer.close()

    def handle(self, text: str) -> str:
        """Act on one message; the ACK tells the sender whether it was taken."""
        try:
            received = order(text)
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
