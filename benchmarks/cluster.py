"""A cluster on one machine: ingest through HAProxy into one node and into three, and the
cost of the proxy hop.

    python benchmarks/cluster.py [--count 600] [--associations 6] [--repeat 1] [--echoes 300]

Every node is ``pacsnode serve`` with ``workers = 1`` and a ``[cluster]`` section, all on
one fresh PostgreSQL database and one storage directory (emptied between runs), and
HAProxy runs the configuration docs/cluster.md gives (as tests/test_cluster.py does).
DCMTK ``storescu`` (TCP_NODELAY=1) sends ``--count`` CT instances of 512x512 16-bit
over ``--associations`` parallel associations:

- straight to one node's own port;
- through HAProxy to that one node (the proxy hop's cost on bulk data);
- through HAProxy to three nodes (``balance leastconn``).

Then ``--echoes`` associations one after the other, each a C-ECHO (pacsnode's own
requestor), straight and through HAProxy: the hop's cost on setting up an association,
which is what a modality sending one study per association pays.

On one machine the three nodes share its cores, disk and PostgreSQL: the figures show
what the cluster costs, not what it gains; docs/cluster.md says what changes on
several machines. PostgreSQL: ``--postgres-url``, ``PACSNODE_BENCH_POSTGRES_URL`` or
``PACSNODE_TEST_POSTGRES_URL``, a role that may create databases. Figures go to
``benchmarks/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa
from common import (
    BENCHMARKS,
    ct_corpus,
    free_port,
    percentile,
    spawn,
    stop,
    storescu,
    workdir,
    write_pacsnode_config,
    write_results,
)

sys.path.insert(0, str(BENCHMARKS.parent / "tests"))  # HAProxy as the tests run it
from haproxy import Backend, HAProxy

from pacsnode.dimse.scu import Peer, echo

AE = "PACS"


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards."""
    name = f"pacsnode_bench_cluster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def node(base: Path, name: str, database_url: str, storage: Path) -> Iterator[Backend]:
    """One cluster node; yields its ports once it logged "pacsnode ready"."""
    dicom_port, http_port = free_port(), free_port()
    data = base / f"{name}-data"
    shutil.rmtree(data, ignore_errors=True)
    config = write_pacsnode_config(
        base / f"{name}.toml",
        {
            "ae_title": AE,
            "dicom_port": dicom_port,
            "http_port": http_port,
            "bind_address": "127.0.0.1",
            "data_dir": str(data),
            "workers": 1,
            "log_level": "INFO",
        },
    )
    with config.open("a") as out:
        out.write(
            f'\n[cluster]\nnode = "{name}"\ndatabase_url = "{database_url}"\n'
            f'storage = "{storage}"\ndrain_seconds = 0\n'
        )
    log_path = base / f"{name}.log"
    log_path.write_bytes(b"")
    process = spawn([sys.executable, "-m", "pacsnode", "serve", "--config", str(config)], log_path)
    try:
        deadline = time.monotonic() + 120
        while "pacsnode ready" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start, see {log_path}")
            time.sleep(0.05)
        yield Backend(name, dicom_port, http_port)
    finally:
        stop(process)


@contextmanager
def cluster(base: Path, admin_url: str, count: int) -> Iterator[tuple[list[Backend], HAProxy]]:
    """``count`` nodes on a fresh database and storage, and HAProxy in front of them."""
    storage = base / "shared"
    shutil.rmtree(storage, ignore_errors=True)
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(admin_url))
        # The first node makes the schema; the others find it.
        backends = [stack.enter_context(node(base, "node-1", url, storage))]
        backends += [
            stack.enter_context(node(base, f"node-{n}", url, storage)) for n in range(2, count + 1)
        ]
        proxy = HAProxy(base, backends)
        stack.callback(proxy.stop)
        for backend in backends:
            proxy.wait_until(backend.name, "UP")
        yield backends, proxy


def ingest(files: list[Path], port: int, associations: int) -> float:
    return storescu(port, AE, files, associations)


def echo_latencies(port: int, count: int) -> list[float]:
    """Milliseconds of each association: A-ASSOCIATE, C-ECHO, A-RELEASE."""
    peer = Peer("127.0.0.1", port, AE, "BENCH")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        assert echo(peer) == 0
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--associations", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--echoes", type=int, default=300)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PACSNODE_BENCH_POSTGRES_URL")
        or os.environ.get("PACSNODE_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    if not args.postgres_url:
        sys.exit("set PACSNODE_BENCH_POSTGRES_URL (a role that may create databases)")
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed (apt-get install haproxy)")

    base = workdir("pacsnode-bench-cluster")
    files = ct_corpus(base / "corpus", args.count)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(
        f"corpus: {len(files)} CT instances, {megabytes:.0f} MB, {args.associations} "
        f"associations; {os.cpu_count()} CPUs; median of {args.repeat}",
        flush=True,
    )
    figures: dict[str, object] = {
        "count": len(files),
        "megabytes": round(megabytes, 1),
        "associations": args.associations,
    }

    def rate(name: str, nodes: int, through_proxy: bool) -> float:
        times = []
        for _ in range(args.repeat):
            with cluster(base, args.postgres_url, nodes) as (backends, proxy):
                port = proxy.dicom_port if through_proxy else backends[0].dicom_port
                times.append(ingest(files, port, args.associations))
        seconds = statistics.median(times)
        per_second = len(files) / seconds
        print(f"{name:32s} {per_second:8.1f} inst/s {megabytes / seconds:8.1f} MB/s", flush=True)
        figures[name] = {"instances_per_second": round(per_second, 1), "seconds": seconds}
        return per_second

    direct = rate("1 node, direct", 1, False)
    proxied = rate("1 node through haproxy", 1, True)
    three = rate("3 nodes through haproxy", 3, True)
    print(f"1 node through haproxy / direct: {proxied / direct:.2f}x (the proxy hop on ingest)")
    print(f"3 nodes / 1 node through haproxy: {three / proxied:.2f}x")

    with cluster(base, args.postgres_url, 1) as (backends, proxy):
        echo_latencies(backends[0].dicom_port, 20)  # warm up
        for name, port in (("direct", backends[0].dicom_port), ("haproxy", proxy.dicom_port)):
            times = echo_latencies(port, args.echoes)
            median, p95 = statistics.median(times), percentile(times, 95)
            print(f"association + C-ECHO {name:8s} median {median:6.2f} ms  p95 {p95:6.2f} ms")
            figures[f"echo {name}"] = {"median_ms": round(median, 2), "p95_ms": round(p95, 2)}
    path = write_results("cluster", figures)
    print(f"figures in {path}")


if __name__ == "__main__":
    main()
