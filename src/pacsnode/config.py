"""Settings: a TOML file, then ``PACSNODE_*`` environment variables, then CLI flags.

Each later source wins over the earlier ones. The file's ``[server]`` keys carry the
names of the CLI flags (``ae_title`` for ``--ae-title``), so an administrator can move a
setting between the three places without translating it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from pacsnode.archive.matching import visibility_problem

DuplicatePolicy = Literal["keep", "overwrite", "refuse"]
DUPLICATE_POLICIES: tuple[str, ...] = get_args(DuplicatePolicy)
CommitmentReportMode = Literal["same", "new", "same_if_open"]
RejectedAnswer = Literal["warning", "failure"]
HttpAuth = Literal["none", "basic", "oauth2"]
UnknownCallingAE = Literal["accept", "reject"]
SyntaxChoice = Literal["proposer", "ours"]
SERVICES = ("echo", "store", "find", "move", "get", "commit", "mwl", "mpps")
"""The words for DIMSE services in ``offers``, ``allowed`` and ``unknown_ae_allowed``."""

CONFIG_ENV = "PACSNODE_CONFIG"
ENV_PREFIX = "PACSNODE_"


class ConfigError(ValueError):
    """A setting is missing, unknown or has a value of the wrong kind."""


@dataclass(frozen=True)
class RemoteAE:
    """A DICOM node we know by AE title.

    Later capabilities add fields here (allowed services, TLS, preferred transfer
    syntaxes); a field always has a default so that old config files stay valid.
    """

    ae_title: str
    host: str
    port: int
    description: str = ""
    duplicate_policy: DuplicatePolicy | None = None
    """Overrides the server's policy for what this AE sends (CDRClient re-sends edits)."""
    commitment_report: CommitmentReportMode = "same_if_open"
    """Where this AE gets storage commitment reports: on its own association ("same"),
    on a new one to its address ("new"), or on its own while open, else new."""
    pending_responses: bool = True
    """Whether this AE gets pending C-MOVE and C-GET responses; off for a client that
    takes any response for the last one."""
    offers: tuple[str, ...] = ()
    """Services the node provides that we may call: echo, store, find, move, get,
    commit, mwl, mpps. Empty means all of them."""
    allowed: tuple[str, ...] = ()
    """Services the node may ask of us, in the same words. Empty means all of them.
    Another one is answered 0124 (Refused: Not Authorized)."""
    check_host: bool = False
    """Refuse an association under this AE title from any address but ``host``'s (a
    name is resolved at each association). Config file only, as ``tls``."""
    visible: tuple[tuple[str, str], ...] = ()
    """Attribute keyword to DICOM matching value (``*``, ``?``): this AE's C-FIND finds,
    and its C-MOVE and C-GET retrieve, only studies matching all of them; others look
    missing. Patient, study and series attributes the index keeps; empty shows all.
    Config file only, as ``tls`` (``visible = { InstitutionName = "CLINIC A*" }``)."""
    transfer_syntaxes: tuple[str, ...] = ()
    """Transfer syntaxes to send it, best first; empty sends each object as stored."""
    move_destination_only: bool = False
    """A C-MOVE destination only: nothing is sent to it unasked (no routing, no
    forwarding), whatever else it could accept."""
    tls: bool = False
    """Associate with it over DICOM TLS, presenting our ``tls_certificate`` and checking
    its certificate against ``tls_ca_certificates``. Config file only: a run-time entry
    for the same AE title keeps what the file says."""

    def offers_service(self, service: str) -> bool:
        return not self.offers or service in self.offers


@dataclass(frozen=True)
class Printer:
    """A DICOM printer (``[[printer]]`` in the config), named for ``pacsnode print`` and
    ``POST /api/print``, with the films it takes (digest-001 §5.7 per-printer settings)."""

    name: str
    ae_title: str
    host: str
    port: int
    description: str = ""
    color: bool = False
    """Print every film in colour; otherwise only films with a colour image are (both
    need the printer to accept Basic Color Print Management)."""
    bits: int = 8
    """Grayscale image box depth: 8, or 12 for a printer that takes 12-bit pixels."""
    film_sizes: tuple[str, ...] = ("14INX17IN",)
    """Film Size IDs it takes; the first is the default."""
    layouts: tuple[str, ...] = ("STANDARD\\1,1",)
    """Image Display Formats it takes (``2,2`` is short for ``STANDARD\\2,2``); the first
    is the default."""
    orientation: str = "PORTRAIT"
    magnification: str = "REPLICATE"
    medium_type: str = "BLUE FILM"
    film_destination: str = "PROCESSOR"
    presentation_lut: str = ""
    """Presentation LUT Shape to create and reference from each grayscale film:
    "IDENTITY", "LIN OD", or empty for none."""
    max_copies: int = 0
    """The most copies one request may ask for; 0 is no limit."""
    print_per_session: bool = False
    """Print all films of a request with one Film Session N-ACTION (digest-002 §5.14)
    instead of one Film Box N-ACTION per film, for printers that collate sessions."""


@dataclass(frozen=True)
class RouteRule:
    """Forward what arrives and matches to remote AEs (``[[route]]`` in the config).

    Every criterion is a list where empty means "any"; ``match`` maps attribute
    keywords to DICOM matching values (``*`` and ``?`` wildcards).
    """

    name: str
    destinations: tuple[str, ...]
    calling_ae: tuple[str, ...] = ()
    called_ae: tuple[str, ...] = ()
    modality: tuple[str, ...] = ()
    sop_class: tuple[str, ...] = ()
    match: tuple[tuple[str, str], ...] = ()
    transfer_syntax: str = ""
    """Send in this syntax; empty uses the destination's ``transfer_syntaxes``."""
    allow_lossy: bool = False
    """Whether ``transfer_syntax`` may be a lossy one; never applied to an object that
    is already lossy compressed (it goes as stored)."""
    commit: bool = False
    """Ask the destination for storage commitment of what was sent."""
    wait_for_stable_study: float = 0.0
    """Send the study once it had no new instance for this many seconds; 0 sends each
    instance as it arrives."""


@dataclass(frozen=True)
class Settings:
    ae_title: str = "PACSNODE"
    dicom_port: int = 11112
    http_port: int = 8042
    """DICOMweb, WADO-URI and the REST API; 0 turns the HTTP door off."""
    http_bind_address: str = "127.0.0.1"
    """Where the HTTP door listens. With ``http_auth = "none"`` it is loopback whatever
    this says: an archive without authentication is not put on the network."""
    http_auth: HttpAuth = "none"
    """"basic" checks users' passwords (``http_users`` and ``pacsnode user``); "oauth2"
    checks bearer JWTs against ``oauth2_issuer``. Both accept API tokens."""
    http_users: tuple[str, ...] = ()
    """``name:password`` (an admin) or ``name:role:password`` entries, role being viewer,
    operator or admin; the password may be a ``pbkdf2_sha256$…`` hash from
    ``pacsnode hash-password``."""
    oauth2_issuer: str = ""
    """The token issuer (``iss``); its JWKS is read from ``oauth2_jwks_url`` or, when that
    is empty, from the issuer's OpenID configuration."""
    oauth2_jwks_url: str = ""
    oauth2_audience: str = ""
    """The ``aud`` tokens must carry; empty accepts any audience."""
    oauth2_roles_claim: str = "roles"
    """The JWT claim that holds the caller's roles (admin, operator, viewer, or with a
    ``pacsnode:`` prefix); a dotted name reaches into an object (``realm_access.roles``).
    A token without one is a viewer's."""
    cors_origins: tuple[str, ...] = ()
    """Origins of web viewers allowed to call DICOMweb from a browser; ``*`` allows any."""
    public_url: str = ""
    """The archive's HTTP address as clients see it (behind a proxy), for Retrieve URLs
    and BulkDataURIs; empty derives it from each request."""
    stow_max_bytes: int = 4 * 1024**3
    """The largest STOW-RS request body accepted; larger ones get 413."""
    bind_address: str = "0.0.0.0"
    data_dir: Path = Path("pacsnode-data")
    database_url: str = ""
    """Empty means a SQLite file inside ``data_dir``."""
    max_associations: int = 30
    """More simultaneous associations are refused as "local limit exceeded" (transient)."""
    unknown_calling_ae: UnknownCallingAE = "accept"
    """What a calling AE title that is no remote AE gets: "accept" serves it
    ``unknown_ae_allowed``, "reject" refuses it ("calling AE title not recognized")."""
    unknown_ae_allowed: tuple[str, ...] = ()
    """Services an unknown calling AE may use, as ``allowed``; empty means all of them."""
    check_called_ae: bool = False
    """Refuse an association that calls another AE title than ours ("called AE title not
    recognized"); with ``move_spanning`` the titles of remote AEs offering "move" pass
    too. Off by default: any called AE title is served, as before this setting."""
    max_pdu_size: int = 1_048_576
    """The largest PDU we accept; 0 means unlimited. Large PDUs cut per-PDU overhead."""
    transfer_syntax_choice: SyntaxChoice = "proposer"
    """Which transfer syntax a presentation context gets when several are proposed: the
    first in the proposer's order that we accept ("proposer", so that a modality
    proposing JPEG 2000 first sends JPEG 2000), or the first in our own order ("ours":
    Explicit VR Little Endian, Implicit VR Little Endian, ..., compressed last)."""
    workers: int = 0
    """Processes that serve the DIMSE and HTTP ports together; 0 is one per CPU core."""
    duplicate_policy: DuplicatePolicy = "keep"
    response_character_set: str = "ISO_IR 192"
    """How C-FIND answers are encoded; a character it cannot represent becomes '?'."""
    case_insensitive_matching: bool = True
    """Person names and the keys the conformance statements list (Accession Number,
    Modality, Study Description…) match regardless of case."""
    network_timeout: float = 60.0
    """Seconds of silence after which an association is aborted; also the longest a
    started PDU may pause."""
    acse_timeout: float = 30.0
    """Seconds a new connection has to send its A-ASSOCIATE-RQ (and we to get an answer
    to ours) before it is closed."""
    dimse_timeout: float = 60.0
    """Seconds we wait for a peer's DIMSE response: to our requests, and to the C-STOREs
    of a C-GET."""
    shutdown_grace: float = 30.0
    """Seconds to let in-flight C-STOREs finish on SIGTERM before aborting."""
    log_level: str = "INFO"
    mpps_destinations: tuple[str, ...] = ()
    """Remote AE titles that get every MPPS N-CREATE and N-SET we receive."""
    mpps_keep_calling_ae: bool = False
    """Forward MPPS under the modality's calling AE title rather than ours."""
    ian_subscribers: tuple[str, ...] = ()
    """Remote AE titles told by Instance Availability Notification when a study is there."""
    ian_on_mpps_completed: bool = True
    ian_study_stable_seconds: float = 0.0
    """Also notify once a study has had no new instance for this long; 0 is off."""
    rejected_store_answer: RejectedAnswer = "warning"
    """A copy of an instance rejected for quality, safety or a wrong worklist entry is
    not stored; "warning" answers B006 as synedra does, "failure" answers C000."""
    hl7_port: int = 0
    """MLLP port of the HL7 v2 order listener (ORM^O01 to worklist items); 0 is off."""
    worklist_hide_finished: bool = True
    """Worklist items whose procedure step is COMPLETED or DISCONTINUED are not returned."""
    prefetch_from: tuple[str, ...] = ()
    """Remote archives asked for a patient's prior studies when a worklist item is
    scheduled or a procedure step starts; the newest missing ones are retrieved."""
    prefetch_max_studies: int = 5
    job_workers: int = 2
    """Threads that run outbound jobs (reports, forwards, notifications)."""
    job_max_attempts: int = 10
    job_retry_delay: float = 5.0
    """Seconds before a failed job's first retry; each later retry waits twice as long."""
    find_spanning: tuple[str, ...] = ()
    """Remote AE titles every Query/Retrieve C-FIND is also sent to, unaltered; their
    answers follow ours, without duplicates. Empty is off."""
    move_spanning: bool = False
    """Forward a C-MOVE whose called AE title is a remote AE offering "move" to that AE
    (off by default, so that a mistyped called AE title is never sent elsewhere)."""
    tls_port: int = 0
    """A second DIMSE port that speaks DICOM TLS (PS3.15 Annex B, BCP 195: TLS 1.2 and
    1.3 only, forward-secret AEAD cipher suites), served by the same AE; 0 is off."""
    tls_certificate: str = ""
    """Our certificate (PEM, chain allowed) for the TLS port, HTTPS, and as the client
    certificate toward remote AEs with ``tls = true``."""
    tls_private_key: str = ""
    """The PEM private key of ``tls_certificate``."""
    tls_ca_certificates: str = ""
    """A PEM bundle of the CAs whose certificates we trust: clients' on the TLS port, and
    remote AEs' when we call them. Empty trusts the system's CAs as a client, and no
    client certificate as a server."""
    tls_require_client_certificate: bool = False
    """On the TLS port, refuse a client whose certificate is missing or not signed by a
    CA of ``tls_ca_certificates`` (the handshake fails, before any association). HTTPS
    never asks for client certificates: its users log in."""
    http_tls: bool = False
    """Serve the HTTP port as HTTPS with ``tls_certificate`` and ``tls_private_key``."""
    audit_syslog: str = ""
    """Where IHE ATNA audit messages go: ``udp://host:514``, ``tcp://host:port`` or
    ``tls://host:port`` (RFC 5424 syslog); empty sends none."""
    audit_tls_ca: str = ""
    """PEM file of the CA that signed the collector's certificate (``tls://``); empty
    uses the system's trusted CAs."""
    audit_log: bool = True
    """Also keep every audit message in ``data_dir/audit/`` (searchable by ``/api/audit``)."""
    remote_ae: tuple[RemoteAE, ...] = field(default_factory=tuple)
    routes: tuple[RouteRule, ...] = field(default_factory=tuple)
    printers: tuple[Printer, ...] = field(default_factory=tuple)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"


SERVER_KEYS = {
    f.name: f
    for f in dataclasses.fields(Settings)
    if f.name not in ("remote_ae", "routes", "printers")
}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Turn a value from a file or the environment into the field's type."""
    if value is None:
        return None
    try:
        if kind in (int, "int"):
            return int(value)
        if kind in (float, "float"):
            return float(value)
        if kind in (Path, "Path"):
            return Path(value)
        if kind in (bool, "bool"):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if kind == "tuple[str, ...]":  # a TOML list, or a comma-separated variable
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(item).strip() for item in items if str(item).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: {value!r} is not a valid {kind}") from exc
    return str(value)


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"setting {name!r} must be one of {', '.join(choices)}")


def _remote_from_table(table: dict[str, Any]) -> RemoteAE:
    known = {f.name: f for f in dataclasses.fields(RemoteAE)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"[[remote_ae]] has unknown keys: {', '.join(sorted(unknown))}")
    missing = {"ae_title", "host", "port"} - set(table)
    if missing:
        raise ConfigError(f"[[remote_ae]] needs {', '.join(sorted(missing))}")
    values = {
        key: _coerce(key, value, known[key].type)
        for key, value in table.items()
        if key != "visible"
    }
    values["visible"] = _visibility_from_table(table.get("visible", {}))
    _check_choice("remote_ae.duplicate_policy", values.get("duplicate_policy"), DUPLICATE_POLICIES)
    _check_choice(
        "remote_ae.commitment_report",
        values.get("commitment_report"),
        get_args(CommitmentReportMode),
    )
    for words in ("offers", "allowed"):
        _check_services(f"remote_ae.{words}", values.get(words, ()))
    return RemoteAE(**values)


def _visibility_from_table(table: Any) -> tuple[tuple[str, str], ...]:
    """``visible`` as sorted (keyword, value) pairs, each keyword one the index matches."""
    if not isinstance(table, dict):
        raise ConfigError("remote_ae.visible must be a table of keyword = value")
    for keyword in table:
        problem = visibility_problem(str(keyword))
        if problem is not None:
            raise ConfigError(f"setting 'remote_ae.visible': {problem}")
    return tuple(sorted((str(k), str(v)) for k, v in table.items()))


def _check_services(name: str, words: tuple[str, ...]) -> None:
    unknown = [word for word in words if word not in SERVICES]
    if unknown:
        listed = ", ".join(unknown)
        raise ConfigError(f"setting {name!r}: unknown {listed}; use {', '.join(SERVICES)}")


def _printer_from_table(table: dict[str, Any]) -> Printer:
    known = {f.name: f for f in dataclasses.fields(Printer)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"[[printer]] has unknown keys: {', '.join(sorted(unknown))}")
    missing = {"name", "ae_title", "host", "port"} - set(table)
    if missing:
        raise ConfigError(f"[[printer]] needs {', '.join(sorted(missing))}")
    values = {key: _coerce(key, value, known[key].type) for key, value in table.items()}
    printer = Printer(**values)
    _check_choice("printer.bits", str(printer.bits), ("8", "12"))
    _check_choice("printer.presentation_lut", printer.presentation_lut, ("", "IDENTITY", "LIN OD"))
    _check_choice("printer.orientation", printer.orientation, ("PORTRAIT", "LANDSCAPE"))
    if not printer.film_sizes or not printer.layouts:
        raise ConfigError(f"printer {printer.name!r}: film_sizes and layouts must not be empty")
    return printer


LOSSLESS_COMPRESSED = frozenset(
    {
        "1.2.840.10008.1.2.5",  # RLE
        "1.2.840.10008.1.2.4.57",  # JPEG lossless
        "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless only
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 lossless only
        "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    }
)


def is_lossy_syntax(uid: str) -> bool:
    """Whether encoding in this syntax may change the pixels (pydicom cannot tell)."""
    return UID(uid).is_compressed and uid not in LOSSLESS_COMPRESSED


def route_from_table(table: dict[str, Any], remotes: tuple[RemoteAE, ...]) -> RouteRule:
    """A ``[[route]]`` table (or a rule added through the REST API), checked against
    the remote AEs it sends to."""
    known = {f.name: f for f in dataclasses.fields(RouteRule)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"[[route]] has unknown keys: {', '.join(sorted(unknown))}")
    missing = {"name", "destinations"} - set(table)
    if missing:
        raise ConfigError(f"[[route]] needs {', '.join(sorted(missing))}")
    match = table.get("match", {})
    if not isinstance(match, dict):
        raise ConfigError("route.match must be a table of keyword = value")
    values = {
        key: _coerce(f"route.{key}", value, known[key].type)
        for key, value in table.items()
        if key != "match"
    }
    rule = RouteRule(**values, match=tuple(sorted((str(k), str(v)) for k, v in match.items())))
    _check_route(rule, {remote.ae_title: remote for remote in remotes})
    return rule


def _check_route(rule: RouteRule, remotes: dict[str, RemoteAE]) -> None:
    if not rule.name.strip() or not rule.destinations:
        raise ConfigError("a route needs a name and at least one destination")
    for destination in rule.destinations:
        remote = remotes.get(destination)
        if remote is None:
            raise ConfigError(f"route {rule.name!r}: {destination} is not a [[remote_ae]]")
        if remote.move_destination_only:
            raise ConfigError(
                f"route {rule.name!r}: {destination} is a C-MOVE destination only "
                "(move_destination_only) and is never sent anything unasked"
            )
    for keyword, _value in rule.match:
        if tag_for_keyword(keyword) is None:
            raise ConfigError(f"route {rule.name!r}: {keyword} is not a DICOM keyword")
    syntax = UID(rule.transfer_syntax)
    if rule.transfer_syntax and not syntax.is_transfer_syntax:
        raise ConfigError(f"route {rule.name!r}: {syntax} is not a transfer syntax")
    lossy = rule.transfer_syntax and is_lossy_syntax(syntax)
    if lossy and not rule.allow_lossy:
        raise ConfigError(f"route {rule.name!r}: {syntax.name} is lossy; set allow_lossy")


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    server = document.get("server", {})
    unknown = set(server) - set(SERVER_KEYS)
    if unknown:
        raise ConfigError(f"[server] has unknown keys: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(server)
    values["remote_ae"] = tuple(_remote_from_table(t) for t in document.get("remote_ae", []))
    values["routes"] = tuple(
        route_from_table(t, values["remote_ae"]) for t in document.get("route", [])
    )
    values["printers"] = tuple(_printer_from_table(t) for t in document.get("printer", []))
    if len({printer.name for printer in values["printers"]}) != len(values["printers"]):
        raise ConfigError("[[printer]] names must be unique")
    names = [rule.name for rule in values["routes"]]
    if len(names) != len(set(names)):
        raise ConfigError("[[route]] names must be unique")
    return values


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in SERVER_KEYS
        if ENV_PREFIX + name.upper() in environ
    }


def _check_audit_syslog(value: str | None) -> None:
    if value and not re.fullmatch(r"(udp|tcp|tls)://[^\s:/]+:\d{1,5}", value):
        raise ConfigError(
            "setting 'audit_syslog' must look like udp://host:514, tcp://… or tls://…"
        )


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge file, environment and flags (``None`` flags are ignored) into Settings."""
    environ = dict(os.environ) if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    merged: dict[str, Any] = read_config_file(config_file) if config_file else {}
    merged.update(_from_environment(environ))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values = {
        name: _coerce(name, value, SERVER_KEYS[name].type)
        for name, value in merged.items()
        if name not in ("remote_ae", "routes", "printers")
    }
    _check_choice("duplicate_policy", values.get("duplicate_policy"), DUPLICATE_POLICIES)
    _check_choice(
        "rejected_store_answer", values.get("rejected_store_answer"), get_args(RejectedAnswer)
    )
    _check_choice("http_auth", values.get("http_auth"), get_args(HttpAuth))
    _check_choice(
        "transfer_syntax_choice", values.get("transfer_syntax_choice"), get_args(SyntaxChoice)
    )
    _check_choice(
        "unknown_calling_ae", values.get("unknown_calling_ae"), get_args(UnknownCallingAE)
    )
    _check_services("unknown_ae_allowed", values.get("unknown_ae_allowed", ()))
    _check_audit_syslog(values.get("audit_syslog"))
    settings = Settings(
        **values,
        remote_ae=merged.get("remote_ae", ()),
        routes=merged.get("routes", ()),
        printers=merged.get("printers", ()),
    )
    if len(settings.ae_title) > 16 or not settings.ae_title.strip():
        raise ConfigError("ae_title must be 1 to 16 characters")
    _check_tls(settings)
    return settings


def _check_tls(settings: Settings) -> None:
    """TLS settings that cannot work are refused at start, not at the first handshake."""
    serving = settings.tls_port or settings.http_tls
    if serving and not (settings.tls_certificate and settings.tls_private_key):
        raise ConfigError("tls_port and http_tls need tls_certificate and tls_private_key")
    if settings.tls_require_client_certificate and not settings.tls_ca_certificates:
        raise ConfigError("tls_require_client_certificate needs tls_ca_certificates")
