"""Shared pieces of the benchmarks: corpora, servers on loopback, timing."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In a child process: get SIGTERM when the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError):  # not Linux: the servers are stopped in `finally`
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A server process whose output goes to ``log``, and that dies with us."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_for_port(
    port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def ct_corpus(directory: Path, count: int, studies: int = 1) -> list[Path]:
    """``count`` CT instances of 512x512 16-bit, spread over ``studies`` studies."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("*.dcm"))
    if len(existing) == count:
        return existing
    for old in existing:
        old.unlink()
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4000, (512, 512), dtype=np.uint16).tobytes()
    study_uids = [generate_uid() for _ in range(studies)]
    series_uids = [generate_uid() for _ in range(studies)]
    paths = []
    for number in range(count):
        which = number % studies
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName = f"BENCH^PATIENT{which}"
        ds.PatientID = f"BENCH{which:05d}"
        ds.StudyInstanceUID = study_uids[which]
        ds.SeriesInstanceUID = series_uids[which]
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = f"ACC{which:06d}"
        ds.Modality = "CT"
        ds.InstanceNumber = number + 1
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"ct{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def storescu(
    port: int,
    called_ae: str,
    files: list[Path],
    associations: int = 1,
    max_pdu: int | None = None,
) -> float:
    """Seconds for ``associations`` storescu processes to send ``files`` between them."""
    env = dict(os.environ, TCP_NODELAY="1")
    groups = [files[i::associations] for i in range(associations)]
    options = ["--max-send-pdu", str(max_pdu)] if max_pdu else []
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            ["storescu", *options, "-aec", called_ae, "127.0.0.1", str(port), *map(str, group)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    for process in processes:
        _, errors = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {errors.decode()[-500:]}")
    return time.perf_counter() - started


def cpu_seconds(command_part: bytes) -> float:
    """User and system CPU seconds used so far by the processes whose command line holds
    ``command_part`` (``b"pacsnode\0serve"``) and by their descendants (the workers)."""
    stats: dict[int, list[str]] = {}
    roots = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if command_part in (entry / "cmdline").read_bytes():
                roots.add(int(entry.name))
        except OSError:  # it ended meanwhile
            continue

    def counted(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = int(stats[pid][1]) if pid in stats else 0
        return False

    ticks = sum(int(f[11]) + int(f[12]) for pid, f in stats.items() if counted(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_seconds() -> float:
    """Seconds the machine's cores have spent idle so far, all cores added (the idle
    column of /proc/stat; time waiting on the disk is counted apart, as iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(command_part: bytes, seconds: int = 3, timeout: float = 120.0) -> float:
    """Wait until the server's processes (:func:`cpu_seconds`) have used under 10 % of a
    core in each of ``seconds`` seconds in a row (an idle pacsnode's processes use a few
    per cent between them), so that work a server does after
    receiving (pacsnode makes the DICOMweb metadata of what it received, once receiving
    has paused for a second) is not measured as query time; returns the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while quiet < seconds and time.monotonic() - started < timeout:
        before = cpu_seconds(command_part)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(command_part) - before < 0.1 else 0
    return time.monotonic() - started


@contextmanager
def pacsnode_server(workdir: Path, ae_title: str = "PACSNODE") -> Iterator[int]:
    """A pacsnode on its embedded defaults in a fresh data directory, once every worker
    process is ready (a client connecting earlier would wait in the listen backlog, and
    the start-up would be measured as ingest time)."""
    data = workdir / "pacsnode-data"
    shutil.rmtree(data, ignore_errors=True)
    settings = {"ae_title": ae_title, "data_dir": str(data), "http_port": free_port()}
    with pacsnode_serve(workdir, "pacsnode", settings) as port:
        yield port


@contextmanager
def orthanc_server(
    workdir: Path,
    tcp_nodelay: bool,
    extra: dict[str, object] | None = None,
    ae_title: str = "ORTHANC",
    keep_storage: bool = False,
) -> Iterator[tuple[int, int]]:
    """Orthanc from the Debian package with a throw-away config; yields (dicom, http).

    It starts empty, unless ``keep_storage`` (a restart on what the last one stored).
    """
    if shutil.which("Orthanc") is None:
        raise RuntimeError("Orthanc is not installed (apt-get install orthanc)")
    dicom_port, http_port = free_port(), free_port()
    storage = workdir / "orthanc-db"
    if not keep_storage:
        shutil.rmtree(storage, ignore_errors=True)
    config = {
        "Name": "benchmark",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "StorageCompression": False,
        "Plugins": [],
        "DicomModalities": {},
        "DicomAlwaysAllowStore": True,
    }
    config.update(extra or {})
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config))
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if tcp_nodelay:
        env["TCP_NODELAY"] = "1"
    log_path = workdir / "orthanc.log"
    log_path.write_bytes(b"")
    process = spawn(["Orthanc", str(config_path)], log_path, env)
    try:
        wait_for_port(dicom_port, process=process)
        wait_for_port(http_port, process=process)
        yield dicom_port, http_port
    finally:
        stop(process)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_pacsnode_config(
    path: Path, server: dict[str, object], remotes: Sequence[dict[str, object]] = ()
) -> Path:
    """A pacsnode TOML config: ``[server]`` keys and ``[[remote_ae]]`` tables."""
    lines = ["[server]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in server.items()]
    for remote in remotes:
        lines.append("\n[[remote_ae]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in remote.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def pacsnode_serve(
    workdir: Path,
    name: str,
    server: dict[str, object],
    remotes: Sequence[dict[str, object]] = (),
    timeout: float = 120.0,
) -> Iterator[int]:
    """``pacsnode serve --config`` with these settings; yields its DICOM port.

    Ready when it logs "pacsnode ready" (after its migrations ran), as the tests wait.
    """
    port = free_port()
    settings = {
        "ae_title": "PACSNODE",
        "bind_address": "127.0.0.1",
        "log_level": "INFO",  # the default; "pacsnode ready" is an INFO line
        **server,
        "dicom_port": port,
    }
    config = write_pacsnode_config(workdir / f"{name}.toml", settings, remotes)
    log_path = workdir / f"{name}.log"
    log_path.write_bytes(b"")
    command = [sys.executable, "-m", "pacsnode", "serve", "--config", str(config)]
    process = spawn(command, log_path)
    try:
        deadline = time.monotonic() + timeout
        while "pacsnode ready" not in log_path.read_text(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"pacsnode exited early, see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pacsnode not ready after {timeout} s, see {log_path}")
            time.sleep(0.05)
        yield port
    finally:
        stop(process)


def run_discard_scp(port: int, ae_title: str, max_pdu: int) -> None:
    """A pynetdicom Storage SCP that accepts every storage class and keeps nothing (runs
    forever). It answers success without decoding the data set, with TCP_NODELAY on its
    connections. Prints how many instances each association brought.
    """
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts
    from pynetdicom.transport import ThreadedAssociationServer

    class NoDelayServer(ThreadedAssociationServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            client, address = super().get_request()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return client, address

    received: dict[int, int] = {}

    def on_store(event: Any) -> int:
        key = id(event.assoc)
        received[key] = received.get(key, 0) + 1
        return 0x0000

    def on_closed(event: Any) -> None:
        print(f"association closed: {received.pop(id(event.assoc), 0)} instances", flush=True)

    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = max_pdu
    ae.maximum_associations = 16
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
    syntaxes = [ExplicitVRLittleEndian, "1.2.840.10008.1.2"]
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), syntaxes)
    ae.add_supported_context("1.2.840.10008.1.1", syntaxes)
    handlers: list[Any] = [  # pynetdicom types its events loosely
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_RELEASED, on_closed),
        (evt.EVT_ABORTED, on_closed),
    ]
    server = ae.make_server(("127.0.0.1", port), evt_handlers=handlers, server_class=NoDelayServer)
    print(f"discard SCP {ae_title} on port {port}", flush=True)
    server.serve_forever()


@contextmanager
def _helper_process(workdir: Path, name: str, call: str) -> Iterator[tuple[int, Path]]:
    """``common.<call>`` run with a free port in its own process; yields (port, log)."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    log_path.write_bytes(b"")
    code = (
        f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import common; "
        f"common.{call.format(port=port)}"
    )
    process = spawn([sys.executable, "-c", code], log_path)
    try:
        wait_for_port(port, process=process)
        yield port, log_path
    finally:
        stop(process, 10)


def discard_scp(
    workdir: Path, ae_title: str = "DISCARD", max_pdu: int = 1_048_576
) -> contextlib.AbstractContextManager[tuple[int, Path]]:
    """:func:`run_discard_scp` in its own process; yields (port, log)."""
    call = f"run_discard_scp({{port}}, {ae_title!r}, {max_pdu})"
    return _helper_process(workdir, f"discard-{ae_title.lower()}", call)


_EXPLICIT_LE = b"1.2.840.10008.1.2.1"
_IMPLICIT_LE = b"1.2.840.10008.1.2"


def _recv_exactly(sock: socket.socket, view: memoryview) -> bool:
    received = 0
    while received < len(view):
        count = sock.recv_into(view[received:])
        if not count:
            return False
        received += count
    return True


def _items(data: bytes, offset: int, header: str) -> Iterator[tuple[int, bytes]]:
    """(type, value) of the items of an A-ASSOCIATE PDU or of one of its items."""
    size = struct.calcsize(header)
    while offset + size <= len(data):
        kind, _, length = struct.unpack_from(header, data, offset)
        yield kind, data[offset + size : offset + size + length]
        offset += size + length


def _associate_ac(request: bytes) -> bytes:
    """Accept every presentation context in Explicit, else Implicit VR Little Endian."""
    called, calling = request[4:20], request[20:36]
    items = [struct.pack(">BBH", 0x10, 0, 21) + b"1.2.840.10008.3.1.1.1"]
    for kind, value in _items(request, 68, ">BBH"):
        if kind != 0x20:
            continue
        syntaxes = [v.rstrip(b"\0 ") for k, v in _items(value, 4, ">BBH") if k == 0x40]
        chosen = next((ts for ts in (_EXPLICIT_LE, _IMPLICIT_LE) if ts in syntaxes), None)
        result = 0 if chosen else 4
        syntax = chosen or _IMPLICIT_LE
        sub_item = struct.pack(">BBH", 0x40, 0, len(syntax)) + syntax
        body = struct.pack(">BBBB", value[0], 0, result, 0) + sub_item
        items.append(struct.pack(">BBH", 0x21, 0, len(body)) + body)
    uid = b"1.2.826.0.1.3680043.8.498.1"
    user = struct.pack(">BBHI", 0x51, 0, 4, 1 << 20) + struct.pack(">BBH", 0x52, 0, len(uid)) + uid
    items.append(struct.pack(">BBH", 0x50, 0, len(user)) + user)
    body = struct.pack(">HH", 1, 0) + called + calling + bytes(32) + b"".join(items)
    return struct.pack(">BBI", 0x02, 0, len(body)) + body


def _command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set (always Implicit VR Little Endian), by element."""
    elements, offset = {}, 0
    while offset + 8 <= len(data):
        _group, element, length = struct.unpack_from("<HHI", data, offset)
        elements[element] = data[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return elements


def _response(context: int, request: dict[int, bytes]) -> bytes:
    """A success response to a C-STORE-RQ or C-ECHO-RQ, as a P-DATA-TF PDU."""

    def element(number: int, value: bytes) -> bytes:
        value += b"\0" * (len(value) % 2)
        return struct.pack("<HHI", 0, number, len(value)) + value

    field = struct.unpack("<H", request[0x0100])[0]
    body = element(0x0002, request[0x0002].rstrip(b"\0"))
    body += element(0x0100, struct.pack("<H", field | 0x8000))
    body += element(0x0120, request[0x0110])
    body += element(0x0800, struct.pack("<H", 0x0101))
    body += element(0x0900, struct.pack("<H", 0))
    if 0x1000 in request:
        body += element(0x1000, request[0x1000].rstrip(b"\0"))
    command = element(0x0000, struct.pack("<I", len(body))) + body
    pdv = struct.pack(">IBB", len(command) + 2, context, 0x03) + command
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _serve_raw(sock: socket.socket) -> None:
    """One association: PDUs are read whole into one buffer and data PDVs never copied."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header = bytearray(6)
    buffer = bytearray(1 << 20)
    command = bytearray()
    pending: dict[int, bytes] | None = None
    stored = 0
    with sock:
        while _recv_exactly(sock, memoryview(header)):
            kind, _, length = struct.unpack(">BBI", header)
            if length > len(buffer):
                buffer = bytearray(length)
            body = memoryview(buffer)[:length]
            if not _recv_exactly(sock, body):
                break
            if kind == 0x01:
                sock.sendall(_associate_ac(bytes(body)))
            elif kind == 0x04:
                offset = 0
                while offset < length:
                    size, context, control = struct.unpack_from(">IBB", body, offset)
                    if control & 1:  # a command fragment
                        command += body[offset + 6 : offset + 4 + size]
                        if control & 2:
                            pending = _command(bytes(command))
                            command.clear()
                            if pending.get(0x0800) == b"\x01\x01":  # no data set follows
                                sock.sendall(_response(context, pending))
                    elif control & 2 and pending is not None:  # the last data fragment
                        sock.sendall(_response(context, pending))
                        pending = None
                        stored += 1
                    offset += 4 + size
            elif kind == 0x05:
                sock.sendall(struct.pack(">BBI", 0x06, 0, 4) + bytes(4))
                break
            else:  # an abort, or something a discarding peer need not understand
                break
    print(f"association closed: {stored} instances", flush=True)


def run_raw_discard_scp(port: int) -> None:
    """A Storage SCP that reads PDUs and answers success, with no DICOM toolkit at all.

    For a reference that no sender can outrun: pynetdicom spends ~0.1 ms of Python per
    PDU, so with the 16 KiB PDUs of Orthanc's SCU it takes about 300 instances/s of
    512 KiB. This one accepts any AE title and every presentation context (Explicit or
    Implicit VR Little Endian), answers C-ECHO and C-STORE, and keeps nothing.
    """
    server = socket.create_server(("127.0.0.1", port))
    print(f"raw discard SCP on port {port}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve_raw, args=(client,), daemon=True).start()


def raw_discard_scp(workdir: Path) -> contextlib.AbstractContextManager[tuple[int, Path]]:
    """:func:`run_raw_discard_scp` in its own process; yields (port, log)."""
    return _helper_process(workdir, "discard-raw", "run_raw_discard_scp({port})")


@contextmanager
def storescp_discard(workdir: Path, ae_title: str = "STORESCP") -> Iterator[tuple[int, Path]]:
    """DCMTK ``storescp --ignore`` (receives, keeps nothing) with TCP_NODELAY=1; yields
    (port, log)."""
    port = free_port()
    log_path = workdir / f"storescp-{ae_title.lower()}.log"
    log_path.write_bytes(b"")
    env = dict(os.environ, TCP_NODELAY="1")
    process = spawn(["storescp", "--ignore", "-aet", ae_title, str(port)], log_path, env)
    try:
        wait_for_port(port, process=process)
        yield port, log_path
    finally:
        stop(process, 10)


def getscu_discard(port: int, called_ae: str, study_uid: str, calling_ae: str) -> float:
    """Seconds for DCMTK ``getscu --ignore`` (TCP_NODELAY=1) to C-GET a study, calling as
    ``calling_ae`` (Orthanc serves C-GET only to the AEs it knows)."""
    env = dict(os.environ, TCP_NODELAY="1")
    started = time.perf_counter()
    done = subprocess.run(
        [
            "getscu", "--ignore", "-S", "-aet", calling_ae, "-aec", called_ae,
            "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", str(port),
        ],
        env=env,
        capture_output=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"getscu failed: {done.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Figures of one benchmark run as ``benchmarks/results/NAME.json``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def workdir(name: str) -> Path:
    base = Path(os.environ.get("PACSNODE_BENCH_DIR", tempfile.gettempdir())) / name
    base.mkdir(parents=True, exist_ok=True)
    return base
