"""The bytes of a C-ECHO health check for HAProxy's ``tcp-check`` (docs/cluster.md).

HAProxy checks a DICOM backend by sending fixed bytes and matching what comes back:
an A-ASSOCIATE-RQ proposing Verification, a C-ECHO-RQ, an A-RELEASE-RQ. They depend
on the AE titles only, and are made here by the same encoders as every association:

    python -m pacsnode.net.health_check CALLED_AE [CALLING_AE]
"""

from __future__ import annotations

import struct
import sys

from pacsnode.net import commands
from pacsnode.net.pdu import (
    A_RELEASE_RQ,
    P_DATA_TF,
    AssociateRequest,
    ProposedContext,
    UserInformation,
    encode_request,
    frame,
)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
CHECK_UID = "1.2.826.0.1.3680043.8.498.1"
"""The Implementation Class UID the check announces (pydicom's root): it is no one's."""
SUCCESS_STATUS = "00000009020000000000"
"""Status (0000,0900) US 0000 in a command set, as hex: a successful C-ECHO-RSP."""


def check_lines(called_ae: str, calling_ae: str = "HEALTHCHECK") -> list[str]:
    """The ``tcp-check`` lines of a C-ECHO check from ``calling_ae`` to ``called_ae``."""
    user = UserInformation(16384, CHECK_UID, calling_ae[:16])
    context = ProposedContext(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,))
    associate = encode_request(AssociateRequest(called_ae, calling_ae, [context], user))
    echo = commands.encode(
        {
            "CommandField": commands.C_ECHO_RQ,
            "AffectedSOPClassUID": VERIFICATION,
            "MessageID": 1,
            "CommandDataSetType": 0x0101,
        }
    )
    data = frame(P_DATA_TF, struct.pack(">LBB", len(echo) + 2, 1, 0x03) + echo)
    return [
        "option tcp-check",
        "tcp-check connect",
        f"tcp-check send-binary {associate.hex()}",
        "tcp-check expect rbinary ^02",
        f"tcp-check send-binary {data.hex()}",
        f"tcp-check expect rbinary {SUCCESS_STATUS}",
        f"tcp-check send-binary {frame(A_RELEASE_RQ, bytes(4)).hex()}",
        "tcp-check expect rbinary ^06",
    ]


def main() -> None:
    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python -m pacsnode.net.health_check CALLED_AE [CALLING_AE]")
    print("\n".join(f"    {line}" for line in check_lines(*sys.argv[1:])))


if __name__ == "__main__":
    main()
