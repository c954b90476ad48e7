"""The requestor's side of a C-MOVE or C-GET being answered: its identifier decoded in
the context's syntax, data sets encoded for responses, and whether it was cancelled.

Shared by the retrieve SCP, which answers from the archive, and C-MOVE spanning, which
relays another archive's answers.
"""

from __future__ import annotations

from pydicom import Dataset
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import ServiceClass


class RetrieveChannel:
    def __init__(
        self, service: ServiceClass, request: C_MOVE | C_GET, context: PresentationContext
    ) -> None:
        self.service = service
        self.request = request
        self.context_id = int(context.context_id or 0)
        self.syntax = context.transfer_syntax[0]

    def identifier(self) -> Dataset:
        syntax = self.syntax
        return decode(
            self.request.Identifier,  # type: ignore[arg-type]
            syntax.is_implicit_VR,
            syntax.is_little_endian,
            syntax.is_deflated,
        )

    def encode(self, dataset: Dataset) -> bytes:
        syntax = self.syntax
        encoded = encode(
            dataset, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
        )
        return encoded or b""

    def send_response(self, response: C_MOVE | C_GET) -> None:
        self.service.dimse.send_msg(response, self.context_id)

    def cancelled(self) -> bool:
        return bool(self.service.is_cancelled(int(self.request.MessageID or 0)))
