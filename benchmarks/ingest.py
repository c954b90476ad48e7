"""Ingest throughput: DCMTK storescu into pacsnode and into Orthanc, measured side by side.

    python benchmarks/ingest.py [--count 1000] [--repeat 3]

Each measurement starts a fresh server (empty storage), sends the same corpus of
512x512 16-bit CT instances with ``storescu`` over one association and over four
parallel associations, and reports instances/s, MB/s, the CPU milliseconds the
server's processes spent per instance and the milliseconds per instance the machine's
cores sat idle (not even waiting on the disk): time no process could use, which the
CPU figures do not show. Orthanc runs twice: as
installed, and with ``TCP_NODELAY=1`` (DCMTK leaves Nagle's algorithm on, which on
loopback costs Orthanc an order of magnitude). storescu always gets TCP_NODELAY=1.
pacsnode fsyncs every file and commits its index before answering success.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from common import (
    cpu_seconds,
    ct_corpus,
    idle_seconds,
    orthanc_server,
    pacsnode_server,
    storescu,
    workdir,
)

Server = Callable[[], AbstractContextManager[int]]


def measure(
    server: Server,
    process: bytes,
    called_ae: str,
    files: list[Path],
    associations: int,
    repeat: int,
) -> tuple[float, float, float]:
    """Median seconds over ``repeat`` runs, each into a fresh server, and the median
    CPU seconds the server's processes spent and the cores' idle seconds on a run."""
    times, cpu, idle = [], [], []
    for _ in range(repeat):
        with server() as port:
            before, idle_before = cpu_seconds(process), idle_seconds()
            times.append(storescu(port, called_ae, files, associations))
            cpu.append(cpu_seconds(process) - before)
            idle.append(idle_seconds() - idle_before)
    return statistics.median(times), statistics.median(cpu), statistics.median(idle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    base = workdir("pacsnode-bench-ingest")
    files = ct_corpus(base / "corpus", args.count)
    megabytes = sum(f.stat().st_size for f in files) / 1e6

    def orthanc(nodelay: bool) -> Server:
        @contextmanager
        def start() -> Iterator[int]:
            with orthanc_server(base, nodelay) as (dicom_port, _http_port):
                yield dicom_port

        return start

    servers: dict[str, tuple[Server, bytes, str]] = {
        "pacsnode": (lambda: pacsnode_server(base), b"pacsnode\0serve", "PACSNODE"),
        "orthanc": (orthanc(False), b"Orthanc", "ORTHANC"),
        "orthanc TCP_NODELAY=1": (orthanc(True), b"Orthanc", "ORTHANC"),
    }
    print(f"corpus: {len(files)} CT instances, {megabytes:.0f} MB; median of {args.repeat}")
    results: dict[tuple[str, int], float] = {}
    for associations in (1, 4):
        for name, (server, process, ae) in servers.items():
            seconds, cpu, idle = measure(server, process, ae, files, associations, args.repeat)
            results[(name, associations)] = seconds
            print(
                f"{name:24s} {associations} assoc: {len(files) / seconds:8.1f} inst/s "
                f"{megabytes / seconds:8.1f} MB/s  server CPU {cpu / len(files) * 1000:.2f} "
                f"ms/inst  cores idle {idle / len(files) * 1000:.2f} ms/inst"
            )
    for associations in (1, 4):
        ours = results[("pacsnode", associations)]
        for name in ("orthanc", "orthanc TCP_NODELAY=1"):
            print(
                f"pacsnode / {name:22s} {associations} assoc: "
                f"{results[(name, associations)] / ours:5.2f}x"
            )


if __name__ == "__main__":
    main()
