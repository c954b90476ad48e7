"""Settings: a TOML file, then ``PACSNODE_*`` environment variables, then CLI flags.

Each later source wins over the earlier ones. The file's ``[server]`` keys carry the
names of the CLI flags (``ae_title`` for ``--ae-title``), so an administrator can move a
setting between the three places without translating it. The file is the one named
(``--config``), else ``$PACSNODE_CONFIG``, else :data:`SYSTEM_CONFIG` if it exists: the
server and the administrative commands find the same one.

The dataclasses below are the model; :mod:`pacsnode.validation` checks values against
their annotations, and a mistake is refused with where it was written (file and
section or entry, variable, flag), the key, and the closest valid name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from pacsnode.archive.deidentify import OptionError, Options
from pacsnode.archive.matching import QueryError, check_value, visibility_problem
from pacsnode.archive.uids import (
    IMPLICIT_VR_LITTLE_ENDIAN,
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
)
from pacsnode.validation import (
    Invalid,
    Origin,
    build,
    check_unknown,
    did_you_mean,
    is_word_list,
)

DuplicatePolicy = Literal["keep", "overwrite", "refuse"]
DUPLICATE_POLICIES: tuple[str, ...] = get_args(DuplicatePolicy)
CommitmentReportMode = Literal["same", "new", "same_if_open"]
RejectedAnswer = Literal["warning", "failure"]
HttpAuth = Literal["none", "basic", "oauth2"]
UnknownCallingAE = Literal["accept", "reject"]
SyntaxChoice = Literal["proposer", "ours"]
RetentionFrom = Literal["study_date", "received"]
Direction = Literal["receive", "send"]
CharacterSetMode = Literal["default", "override"]
SERVICES = ("echo", "store", "find", "move", "get", "commit", "mwl", "mpps")
"""The words for DIMSE services in ``offers``, ``allowed`` and ``unknown_ae_allowed``."""

CONFIG_ENV = "PACSNODE_CONFIG"
ENV_PREFIX = "PACSNODE_"
SYSTEM_CONFIG = Path("/etc/pacsnode/pacsnode.toml")
"""The config file of an installation, used when no other is named."""


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
    show_deleted: bool = False
    """Its C-FIND, C-MOVE and C-GET, and DICOMweb under ``/dicom-web/aets/{ae_title}``,
    also see what is hidden but kept: soft-deleted instances, those IOCM rejection
    notes withdrew, and the notes. Config file only, as ``visible``."""
    transfer_syntaxes: tuple[str, ...] = ()
    """Transfer syntaxes to send it, best first; empty sends each object as stored."""
    move_destination_only: bool = False
    """A C-MOVE destination only: nothing is sent to it unasked (no routing, no
    forwarding), whatever else it could accept."""
    tls: bool = False
    """Associate with it over DICOM TLS, presenting our ``tls_certificate`` and checking
    its certificate against ``tls_ca_certificates``. Config file only: a run-time entry
    for the same AE title keeps what the file says."""
    fallback_authority: int | None = None
    """The ``[[authority]]`` whose issuer its objects and requests get when they name
    none (with ``issuer_heuristic``); none means authority 0."""

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
    bits: Literal[8, 12] = 8
    """Grayscale image box depth: 8, or 12 for a printer that takes 12-bit pixels."""
    film_sizes: tuple[str, ...] = ("14INX17IN",)
    """Film Size IDs it takes; the first is the default."""
    layouts: tuple[str, ...] = ("STANDARD\\1,1",)
    """Image Display Formats it takes (``2,2`` is short for ``STANDARD\\2,2``); the first
    is the default."""
    orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    magnification: str = "REPLICATE"
    medium_type: str = "BLUE FILM"
    film_destination: str = "PROCESSOR"
    presentation_lut: Literal["", "IDENTITY", "LIN OD"] = ""
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
    keywords to values matched as C-FIND matches them: ``*`` and ``?`` wildcards on
    text, ranges on dates and times (``20260101-20260131``), ``\\``-separated UIDs.
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
    deidentify: bool = False
    """Send the objects de-identified (PS3.15 Basic Application Level Confidentiality
    Profile, pseudonyms from the archive's key), with ``deidentify_options``."""
    deidentify_options: tuple[str, ...] = ()
    """PS3.15 options: retain-uids, retain-dates, retain-patient-characteristics,
    retain-device-identity, retain-institution-identity, clean-descriptors,
    retain-safe-private."""


@dataclass(frozen=True)
class Cluster:
    """This node as one of several sharing one PostgreSQL index and one storage
    directory (``[cluster]``; ``PACSNODE_CLUSTER_NODE`` and the like). Each node keeps
    its own ``data_dir`` (the audit log); everything else they share."""

    node: str
    """This node's name, unique in the cluster: it names the node in logs, audit
    messages, job claims, ``/api/cluster`` and its spool directory."""
    database_url: str
    """The PostgreSQL index every node uses (``postgresql+psycopg://…``)."""
    storage: Path
    """The storage directory every node mounts: the instance files, and each node's
    spool and temporary files (``tmp/<node>``), on one filesystem so that a finished
    file is renamed into place."""
    job_lease: float = 30.0
    """Seconds a node's claim on a running job holds without renewal: how long a job
    of a node that died waits before another node takes it over."""
    health_check_ae: str = "HEALTHCHECK"
    """The calling AE title of the load balancer's C-ECHO health check."""
    drain_seconds: float = 5.0
    """On SIGTERM, for this long the node refuses the health check's association while
    serving all others, so that the load balancer marks it down and sends new
    associations elsewhere before its ports close; longer than the balancer's
    ``inter`` times ``fall``."""


@dataclass(frozen=True)
class Authority:
    """An assigning authority of Patient IDs, Admission IDs and Accession Numbers
    (``[[authority]]``, digest-002 §8.3); authority 0 is the default one."""

    id: int
    issuer: str
    """The Issuer of Patient ID, and the Local Namespace Entity ID of the issuer
    sequences of Admission ID and Accession Number."""
    universal_entity_id: str = ""
    universal_entity_id_type: str = ""
    """DNS, EUI64, ISO, URI, UUID, X400 or X500, with ``universal_entity_id``."""


@dataclass(frozen=True)
class Coercion:
    """Attribute coercion of the objects some remote AEs send or are sent
    (``[[coercion]]``): each table of keyword = value names the attribute it writes."""

    name: str
    direction: Direction
    """"receive": C-STORE, STOW-RS, import and retrieves into the archive, before the
    object is stored; "send": C-MOVE, C-GET, routing, WADO and media, on the way out."""
    ae_titles: tuple[str, ...] = ()
    """The remote AEs it applies to; empty: every peer, the HTTP door and imports too."""
    copy: tuple[tuple[str, str], ...] = ()
    """Target keyword = the keyword whose value it gets; applied first."""
    set: tuple[tuple[str, str], ...] = ()
    prefix: tuple[tuple[str, str], ...] = ()
    """Keyword = text put before each of its values."""
    map: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """Keyword = a table of value = replacement; other values stay."""
    remove: tuple[str, ...] = ()
    """Keywords removed; applied last."""
    character_set: str = ""
    """A Specific Character Set for what these AEs send (receive only): written where
    the object declares none ("default"), or over what it declares ("override")."""
    character_set_mode: CharacterSetMode = "default"


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
    storage_sop_classes: tuple[str, ...] = ()
    """The storage SOP classes accepted (C-STORE, and the C-STOREs of our C-GET
    answers that a requestor takes); empty accepts every one pacsnode knows. Others are
    refused at negotiation: "abstract syntax not supported"."""
    storage_transfer_syntaxes: tuple[str, ...] = ()
    """The transfer syntaxes storage contexts accept, among those pacsnode knows; empty
    accepts all. Implicit VR Little Endian must be among them (PS3.5 10.1)."""
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
    """DEBUG, INFO, WARNING or ERROR."""
    log_file: str = ""
    """Also write the log to this file, rotated when it reaches ``log_file_max_mb`` with
    ``log_file_backups`` old files kept; empty logs to standard error only."""
    log_file_max_mb: int = 10
    log_file_backups: int = 5
    http_access_log: bool = False
    """Log one line per HTTP request (logger ``pacsnode.http.access``): client, user,
    method, path, status, size and time taken."""
    mpps_destinations: tuple[str, ...] = ()
    """Remote AE titles that get every MPPS N-CREATE and N-SET we receive."""
    mpps_keep_calling_ae: bool = False
    """Forward MPPS under the modality's calling AE title rather than ours."""
    ian_subscribers: tuple[str, ...] = ()
    """Remote AE titles told by Instance Availability Notification when a study is there."""
    ian_on_mpps_completed: bool = True
    ian_study_stable_seconds: float = 0.0
    """Also notify once a study has had no new instance for this long; 0 is off."""
    iocm_destinations: tuple[str, ...] = ()
    """Remote AE titles sent an IOCM rejection note (KOS, C-STORE) for what is deleted
    here or rejected by a note received, then asked on the same association to commit
    it; the note goes through the job queue, retried until committed."""
    retention_days: int = 0
    """Delete (hard, files too) studies older than this many days, counted from
    ``retention_from``; 0 is off."""
    retention_from: RetentionFrom = "study_date"
    """What a study's age counts from: its Study Date ("study_date"; the received date
    when it has none), or when it was received ("received")."""
    retention_disk_percent: float = 0.0
    """While the data directory's filesystem is fuller than this (percent), delete
    (hard) the oldest studies first; 0 is off."""
    retention_interval: float = 3600.0
    """Seconds between two runs of the retention job when a rule is on."""
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
    issuer_heuristic: bool = False
    """Resolve the issuers of Patient IDs, Admission IDs and Accession Numbers from the
    ``[[authority]]`` table and the peer's ``fallback_authority`` (digest-002 §8.3); off,
    a patient is its Patient ID with the issuer its objects name."""
    session_ae_pattern: str = "#.*"
    """Calling AE titles (a regular expression, matched from the start) of sessions,
    whose requests without an issuer get authority 0 rather than a fallback."""
    check_character_set: bool = False
    """Refuse (C000) a data set whose Specific Character Set is unknown or does not
    decode its text, unless a ``[[coercion]]`` sets one for its sender."""
    country: str = ""
    """The tenant's country (ISO 3166 alpha-2): "FR" clears Ethnic Group and Patient
    Religious Preference from every object before it is stored."""
    remote_ae: tuple[RemoteAE, ...] = field(default_factory=tuple)
    routes: tuple[RouteRule, ...] = field(default_factory=tuple)
    printers: tuple[Printer, ...] = field(default_factory=tuple)
    authorities: tuple[Authority, ...] = field(default_factory=tuple)
    coercions: tuple[Coercion, ...] = field(default_factory=tuple)
    cluster: Cluster | None = None
    """Set when this node is one of several (``[cluster]``); None for a single node."""
    config_file: Path | None = None
    """The file these settings were read from, if any (not a setting itself)."""

    @property
    def resolved_database_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.database_url
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def storage_dir(self) -> Path:
        """Where the instance files and the spool are: the cluster's shared directory,
        else the data directory."""
        return self.cluster.storage if self.cluster is not None else self.data_dir

    @property
    def node_name(self) -> str:
        """Who this node is in job claims, logs and audit messages: its cluster name,
        else the host's name."""
        return self.cluster.node if self.cluster is not None else socket.gethostname()


SERVER_KEYS = {
    f.name: f
    for f in dataclasses.fields(Settings)
    if f.name
    not in ("remote_ae", "routes", "printers", "authorities", "coercions", "cluster", "config_file")
}
CLUSTER_KEYS = [f.name for f in dataclasses.fields(Cluster)]
CLUSTER_REQUIRED = ("node", "database_url", "storage")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
"""A node name: it becomes part of directory and file names."""
ENTRIES: dict[str, tuple[type[Any], str, tuple[str, ...]]] = {
    "remote_ae": (RemoteAE, "ae_title", ("ae_title", "host", "port")),
    "route": (RouteRule, "name", ("name", "destinations")),
    "printer": (Printer, "name", ("name", "ae_title", "host", "port")),
    "authority": (Authority, "id", ("id", "issuer")),
    "coercion": (Coercion, "name", ("name", "direction")),
}
"""The arrays of tables: their dataclass, the key that names an entry, required keys."""
SECTIONS = ("server", "cluster", *ENTRIES)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _entry_label(section: str, number: int, table: dict[str, Any]) -> str:
    """``[[remote_ae]] #2 (WS1)``: how an entry is named in messages."""
    name = table.get(ENTRIES[section][1])
    named = isinstance(name, str | int) and not isinstance(name, bool) and name != ""
    return f"[[{section}]] #{number}" + (f" ({name})" if named else "")


def _words(value: Any) -> Any:
    """A list written as a comma-separated string (a variable, a flag) as a tuple,
    blanks dropped; a TOML array with its items stripped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    stripped = (item.strip() if isinstance(item, str) else item for item in items)
    return tuple(item for item in stripped if item != "")


def _typed(cls: type[Any], values: dict[str, Any], origin: Origin) -> Any:
    """The dataclass from raw values (word lists split), or a ConfigError naming the key."""
    prepared = {
        key: _words(value) if is_word_list(cls, key) else value for key, value in values.items()
    }
    try:
        return build(cls, prepared, origin)
    except Invalid as exc:
        raise ConfigError(str(exc)) from None


def _entry(section: str, table: Any, where: str) -> Any:
    """One ``[[remote_ae]]``, ``[[route]]``, ``[[printer]]``… table, checked."""
    cls, _name, required = ENTRIES[section]
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    try:
        check_unknown((f.name for f in dataclasses.fields(cls)), table, where)
    except Invalid as exc:
        raise ConfigError(str(exc)) from None
    missing = [key for key in required if key not in table]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")
    values = dict(table)
    for key in ("visible", "match", "copy", "set", "prefix"):
        if key in values:
            values[key] = _pairs(values[key], f"{where} {key}")
    if "map" in values:
        values["map"] = _maps(values["map"], f"{where} map")
    return _typed(cls, values, lambda key: f"{where} {key}")


def _pairs(table: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``visible`` or ``match``: a table of keyword = matching value, as sorted pairs."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of keyword = value")
    return tuple(sorted((str(k), str(v)) for k, v in table.items()))


def _maps(table: Any, where: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``map``: keyword = a table of value = replacement."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of keyword = {{ value = replacement }}")
    return tuple(sorted((str(k), _pairs(v, f"{where} {k}")) for k, v in table.items()))


def _remote(table: Any, where: str) -> RemoteAE:
    remote: RemoteAE = _entry("remote_ae", table, where)
    _check_ae_title(remote.ae_title, f"{where} ae_title")
    for keyword, _value in remote.visible:
        problem = visibility_problem(keyword)
        if problem is not None:
            raise ConfigError(f"{where} visible: {problem}")
    for words in ("offers", "allowed"):
        _check_services(f"{where} {words}", getattr(remote, words))
    return remote


def _check_services(origin: str, words: tuple[str, ...]) -> None:
    for word in words:
        if word not in SERVICES:
            raise ConfigError(
                f"{origin}: unknown service {word!r}{did_you_mean(word, SERVICES)}; "
                f"the services are {', '.join(SERVICES)}"
            )


def _check_ae_title(title: str, origin: str) -> None:
    if not title.strip():
        raise ConfigError(f"{origin} is empty")
    if len(title) > 16:
        raise ConfigError(f"{origin}: {title!r} is longer than 16 characters")


def _printer(table: Any, where: str) -> Printer:
    printer: Printer = _entry("printer", table, where)
    if not printer.film_sizes or not printer.layouts:
        raise ConfigError(f"{where}: film_sizes and layouts must not be empty")
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


def route_from_table(
    table: dict[str, Any], remotes: tuple[RemoteAE, ...], where: str = "[[route]]"
) -> RouteRule:
    """A ``[[route]]`` table (or a rule added through the REST API), checked against
    the remote AEs it sends to."""
    rule: RouteRule = _entry("route", table, where)
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
    for keyword, value in rule.match:
        if tag_for_keyword(keyword) is None:
            raise ConfigError(f"route {rule.name!r}: {keyword} is not a DICOM keyword")
        try:
            check_value(keyword, value)
        except QueryError as exc:
            raise ConfigError(f"route {rule.name!r}: match {exc}") from None
    try:
        Options.from_words(rule.deidentify_options)
    except OptionError as exc:
        raise ConfigError(f"route {rule.name!r}: {exc}") from None
    if rule.deidentify_options and not rule.deidentify:
        raise ConfigError(f"route {rule.name!r}: deidentify_options need deidentify = true")
    syntax = UID(rule.transfer_syntax)
    if rule.transfer_syntax and not syntax.is_transfer_syntax:
        raise ConfigError(f"route {rule.name!r}: {syntax} is not a transfer syntax")
    lossy = rule.transfer_syntax and is_lossy_syntax(syntax)
    if lossy and not rule.allow_lossy:
        raise ConfigError(f"route {rule.name!r}: {syntax.name} is lossy; set allow_lossy")


def config_file_of(config_file: Path | None, environ: dict[str, str]) -> Path | None:
    """The file settings come from: the one named, else ``$PACSNODE_CONFIG``, else the
    system-wide :data:`SYSTEM_CONFIG` if it exists, else none (the defaults)."""
    if config_file is not None:
        return config_file
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings: ``[server]`` keys and the entries of each array of tables."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    _check_sections(document, path)
    server = document.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{path}: server must be a section, [server]")
    try:
        check_unknown(SERVER_KEYS, server, f"{path}: [server]")
    except Invalid as exc:
        raise ConfigError(str(exc)) from None
    values: dict[str, Any] = dict(server)
    remotes = tuple(_remote(t, w) for t, w in _tables(document, "remote_ae", path))
    values["remote_ae"] = remotes
    values["routes"] = tuple(
        route_from_table(t, remotes, w) for t, w in _tables(document, "route", path)
    )
    values["printers"] = tuple(_printer(t, w) for t, w in _tables(document, "printer", path))
    values["authorities"] = tuple(
        _entry("authority", t, w) for t, w in _tables(document, "authority", path)
    )
    values["coercions"] = tuple(_coercion(t, w) for t, w in _tables(document, "coercion", path))
    for section, key in (("printer", "printers"), ("route", "routes"), ("coercion", "coercions")):
        names = [entry.name for entry in values[key]]
        if len(names) != len(set(names)):
            raise ConfigError(f"{path}: [[{section}]] names must be unique")
    _check_authorities(values["authorities"], remotes, path)
    cluster = document.get("cluster")
    if cluster is not None:
        if not isinstance(cluster, dict):
            raise ConfigError(f"{path}: cluster must be a section, [cluster]")
        try:
            check_unknown(CLUSTER_KEYS, cluster, f"{path}: [cluster]")
        except Invalid as exc:
            raise ConfigError(str(exc)) from None
        values["cluster"] = (f"{path}: [cluster]", cluster)
    return values


def _check_authorities(
    authorities: tuple[Authority, ...], remotes: tuple[RemoteAE, ...], path: Path
) -> None:
    ids = [authority.id for authority in authorities]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{path}: [[authority]] ids must be unique")
    for remote in remotes:
        if remote.fallback_authority is not None and remote.fallback_authority not in ids:
            raise ConfigError(
                f"{path}: [[remote_ae]] {remote.ae_title} fallback_authority: "
                f"{remote.fallback_authority} is not an [[authority]] id"
            )


def _coercion(table: Any, where: str) -> Coercion:
    coercion: Coercion = _entry("coercion", table, where)
    problem = coercion_problem(coercion)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return coercion


UNCOERCIBLE = frozenset(
    {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"}
    | {"SpecificCharacterSet", "PixelData", "OriginalAttributesSequence"}
)
"""What no coercion writes: the object's identity, its character set (``character_set``
does that) and pixels, and the record of coercions itself."""
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)


def coercion_problem(coercion: Coercion) -> str | None:
    """Why a coercion cannot be applied as written, or None."""
    from pydicom.charset import python_encoding
    from pydicom.datadict import dictionary_VR

    written = [k for pairs in (coercion.copy, coercion.set, coercion.prefix) for k, _ in pairs]
    written += [k for k, _ in coercion.map]
    sources = [source for _, source in coercion.copy]
    for keyword in [*written, *coercion.remove, *sources]:
        tag = tag_for_keyword(keyword)
        if tag is None or tag >> 16 == 0x0002:
            return f"{keyword} is not a DICOM keyword of a data set"
    for keyword in [*written, *coercion.remove]:
        if keyword in UNCOERCIBLE:
            return f"{keyword} cannot be coerced"
    for keyword in [*written, *sources]:
        vr = dictionary_VR(keyword)
        if vr not in _TEXT_VRS:
            return f"{keyword} is not a text attribute ({vr})"
    if coercion.character_set:
        if coercion.direction != "receive":
            return "character_set applies to what is received only"
        terms = coercion.character_set.split("\\")
        unknown = [term for term in terms if term.strip() not in python_encoding]
        if unknown:
            return f"character_set: {unknown[0]!r} is not a Specific Character Set term"
    return None


def _check_sections(document: dict[str, Any], path: Path) -> None:
    """Every top-level name must be a known section; a [server] key written above the
    first section is pointed to [server]."""
    for name, value in document.items():
        if name in SECTIONS:
            continue
        if name in SERVER_KEYS:
            raise ConfigError(f"{path}: {name} must be written under [server]")
        written = f"[[{name}]]" if isinstance(value, list) else f"[{name}]"
        choices = [f"[[{s}]]" if s in ENTRIES else f"[{s}]" for s in SECTIONS]
        raise ConfigError(f"{path}: unknown section {written}{did_you_mean(written, choices, '')}")


def _tables(document: dict[str, Any], section: str, path: Path) -> list[tuple[Any, str]]:
    """Each table of an array of tables with its label for messages."""
    tables = document.get(section, [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: write [[{section}]], one table per entry, not [{section}]")
    return [(t, f"{path}: {_entry_label(section, n, t)}") for n, t in enumerate(tables, 1)]


def _from_environment(environ: dict[str, str]) -> dict[str, Any]:
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in SERVER_KEYS
        if ENV_PREFIX + name.upper() in environ
    }


def _cluster_variable(key: str) -> str:
    return f"{ENV_PREFIX}CLUSTER_{key.upper()}"


def _cluster(
    section: tuple[str, dict[str, Any]] | None, environ: dict[str, str], settings: Settings
) -> Cluster | None:
    """The ``[cluster]`` section with ``PACSNODE_CLUSTER_*`` variables over it (so that a
    unit file can name the node of a config file all nodes share), checked; None when
    neither is there."""
    where, written = section or ("[cluster]", {})
    values = dict(written)
    origins = {key: f"{where} {key}" for key in written}
    for key in CLUSTER_KEYS:
        if _cluster_variable(key) in environ:
            values[key] = environ[_cluster_variable(key)]
            origins[key] = _cluster_variable(key)
    if section is None and not values:
        return None
    missing = [key for key in CLUSTER_REQUIRED if key not in values]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")
    cluster: Cluster = _typed(Cluster, values, lambda key: origins.get(key, key))
    if not NODE_NAME.fullmatch(cluster.node):
        raise ConfigError(
            f"{origins['node']}: {cluster.node!r} is not a node name (letters, digits, "
            "'.', '_' and '-', at most 63)"
        )
    scheme = cluster.database_url.split(":", 1)[0]
    if not scheme.startswith("postgresql"):
        raise ConfigError(
            f"{origins['database_url']}: {scheme} is not PostgreSQL: the nodes of a cluster "
            "share one PostgreSQL index (SQLite serves one node only)"
        )
    if settings.database_url and settings.database_url != cluster.database_url:
        raise ConfigError(
            f"{where}: database_url is also set for the server; a cluster node uses "
            "[cluster] database_url only"
        )
    if cluster.job_lease <= 0:
        raise ConfigError(f"{origins['job_lease']}: job_lease must be more than 0 seconds")
    _check_ae_title(cluster.health_check_ae, origins.get("health_check_ae", "health_check_ae"))
    return cluster


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge file, environment and flags (``None`` flags are ignored) into Settings.

    A bad value is a :class:`ConfigError` that says where it was written: the file
    and section, the environment variable, or the flag.
    """
    environ = dict(os.environ) if environ is None else environ
    config_file = config_file_of(config_file, environ)
    merged: dict[str, Any] = read_config_file(config_file) if config_file else {}
    origins = {name: f"{config_file}: [server] {name}" for name in merged}
    from_environment = _from_environment(environ)
    merged.update(from_environment)
    origins.update({name: ENV_PREFIX + name.upper() for name in from_environment})
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged.update(flags)
    origins.update({name: "--" + name.replace("_", "-") for name in flags})
    values = {name: value for name, value in merged.items() if name in SERVER_KEYS}
    if "log_level" in values and isinstance(values["log_level"], str):
        values["log_level"] = values["log_level"].upper()
    settings: Settings = _typed(Settings, values, lambda name: origins.get(name, name))
    settings = dataclasses.replace(
        settings,
        remote_ae=merged.get("remote_ae", ()),
        routes=merged.get("routes", ()),
        printers=merged.get("printers", ()),
        authorities=merged.get("authorities", ()),
        coercions=merged.get("coercions", ()),
        cluster=_cluster(merged.get("cluster"), environ, settings),
        config_file=config_file,
    )
    _check_server(settings, lambda name: origins.get(name, name))
    return settings


def _check_server(settings: Settings, origin: Origin) -> None:
    """What a type cannot say: words in lists, lengths, forms, settings that need others."""
    _check_ae_title(settings.ae_title, origin("ae_title"))
    _check_services(origin("unknown_ae_allowed"), settings.unknown_ae_allowed)
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"{origin('log_level')}: {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    syslog = settings.audit_syslog
    if syslog and not re.fullmatch(r"(udp|tcp|tls)://[^\s:/]+:\d{1,5}", syslog):
        raise ConfigError(
            f"{origin('audit_syslog')}: {syslog!r} must look like udp://host:514, "
            "tcp://host:port or tls://host:port"
        )
    _check_tls(settings)
    _check_storage(settings, origin)
    _check_identity(settings, origin)


def _check_storage(settings: Settings, origin: Origin) -> None:
    """The storage allow-lists name only what pacsnode can accept, and keep the one
    transfer syntax every storage SCP must accept."""
    for name, known, what in (
        ("storage_sop_classes", STORAGE_SOP_CLASSES, "storage SOP class"),
        ("storage_transfer_syntaxes", STORAGE_TRANSFER_SYNTAXES, "transfer syntax"),
    ):
        for uid in getattr(settings, name):
            if uid not in known:
                raise ConfigError(f"{origin(name)}: {uid!r} is not a {what} pacsnode accepts")
    syntaxes = settings.storage_transfer_syntaxes
    if syntaxes and IMPLICIT_VR_LITTLE_ENDIAN not in syntaxes:
        raise ConfigError(
            f"{origin('storage_transfer_syntaxes')}: must include Implicit VR Little Endian "
            f"({IMPLICIT_VR_LITTLE_ENDIAN}), the default every storage SCP accepts"
        )


def _check_identity(settings: Settings, origin: Origin) -> None:
    try:
        re.compile(settings.session_ae_pattern)
    except re.error as exc:
        raise ConfigError(
            f"{origin('session_ae_pattern')}: not a regular expression: {exc}"
        ) from None
    if settings.issuer_heuristic and all(a.id != 0 for a in settings.authorities):
        raise ConfigError(
            f"{origin('issuer_heuristic')}: the issuer heuristic needs the default "
            "[[authority]] (id = 0) in the config file"
        )
    country = settings.country
    if country and not (len(country) == 2 and country.isalpha() and country.isupper()):
        raise ConfigError(f"{origin('country')}: {country!r} is not a two-letter country code")


def _check_tls(settings: Settings) -> None:
    """TLS settings that cannot work are refused at start, not at the first handshake."""
    serving = settings.tls_port or settings.http_tls
    if serving and not (settings.tls_certificate and settings.tls_private_key):
        raise ConfigError("tls_port and http_tls need tls_certificate and tls_private_key")
    if settings.tls_require_client_certificate and not settings.tls_ca_certificates:
        raise ConfigError("tls_require_client_certificate needs tls_ca_certificates")
