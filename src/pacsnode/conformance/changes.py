"""The statement's words on what pacsnode changes in objects: coercion on receive and
send, patient identity (assigning authorities), corrections applied on the way out, and
de-identification, each read from the settings or the module that does it."""

from __future__ import annotations

from collections.abc import Sequence

from pacsnode.archive.coercion import FRENCH_CLEARED
from pacsnode.archive.deidentify import BASIC_PROFILE, OPTION_CODES, TABLE_EDITION, safe_private
from pacsnode.config import Coercion, RemoteAE, Settings
from pacsnode.conformance.model import Deidentification, Difference

ORIGINAL_ATTRIBUTES = "the values replaced are kept in Original Attributes Sequence (0400,0561)"


def differences(settings: Settings, remotes: Sequence[RemoteAE]) -> list[Difference]:
    """Coercion, identity and corrections as the configuration sets them."""
    found = [_received(settings)]
    found += [Difference("coercion on send", _rule(c)) for c in _rules(settings, "send")]
    found.append(
        Difference(
            "corrections",
            "patient and study corrections (REST, CLI, HL7 ADT A08, A31, A40) are what "
            "C-FIND and QIDO-RS answer, and are applied to every object sent (C-MOVE, "
            "C-GET, WADO-RS, media, routing) while the stored files keep their bytes; "
            f"{ORIGINAL_ATTRIBUTES}, and Specific Character Set becomes ISO_IR 192 when "
            "a new value needs it",
        )
    )
    found.append(Difference("Issuer of Patient ID", _identity(settings)))
    for remote in remotes:
        if settings.issuer_heuristic and remote.fallback_authority is not None:
            found.append(
                Difference(
                    f"Issuer of Patient ID {remote.ae_title}",
                    f"what it sends and asks without an issuer is authority "
                    f"{remote.fallback_authority}'s",
                )
            )
    if settings.check_character_set:
        found.append(
            Difference(
                "character set",
                "a data set whose Specific Character Set is unknown or does not decode its "
                "text is refused with C000, unless a coercion rule sets one for its sender",
            )
        )
    return found


def _rules(settings: Settings, direction: str) -> list[Coercion]:
    return [c for c in settings.coercions if c.direction == direction]


def _received(settings: Settings) -> Difference:
    rules = [_rule(c) for c in _rules(settings, "receive")]
    if settings.country == "FR":
        rules.append(f"country FR: {', '.join(FRENCH_CLEARED)} removed from every object")
    if not rules:
        return Difference(
            "coercion",
            "none: objects are stored byte for byte as received, after our File Meta "
            f"Information; C-FIND answers are encoded in {settings.response_character_set}, "
            "a character it cannot represent becoming '?'",
        )
    return Difference(
        "coercion",
        "objects are coerced before they are stored and the C-STORE answered B000: "
        + "; ".join(rules)
        + f"; {ORIGINAL_ATTRIBUTES}",
    )


def _rule(rule: Coercion) -> str:
    """One ``[[coercion]]`` in words: whom it applies to and what it writes."""
    who = ", ".join(rule.ae_titles) if rule.ae_titles else "every peer and door"
    acts = [f"{k} set to '{v}'" for k, v in rule.set]
    acts += [f"{k} copied from {source}" for k, source in rule.copy]
    acts += [f"{k} prefixed with '{v}'" for k, v in rule.prefix]
    acts += [f"{k} mapped ({len(table)} values)" for k, table in rule.map]
    acts += [f"{k} removed" for k in rule.remove]
    if rule.character_set:
        how = "over the one declared" if rule.character_set_mode == "override" else "if none"
        acts.append(f"Specific Character Set {rule.character_set} {how}")
    return f"{rule.name} ({who}): {', '.join(acts) or 'nothing'}"


def _identity(settings: Settings) -> str:
    if not settings.issuer_heuristic:
        return "a patient is its Patient ID with the issuer its objects name"
    authorities = ", ".join(f"{a.id} {a.issuer}" for a in settings.authorities) or "none"
    return (
        "objects received take Issuer of Patient ID and Issuer of Admission ID from the "
        "calling AE's fallback authority, authority 0 without one (authorities: "
        f"{authorities}); C-FIND, C-MOVE, C-GET, worklist and MPPS requests without an "
        f"issuer use authority 0 from calling AE titles matching {settings.session_ae_pattern}, "
        "the caller's fallback authority otherwise; an issuer no authority has matches nothing"
    )


def deidentification() -> Deidentification:
    rows = sorted(safe_private().values(), key=lambda r: (r.creator, r.group, r.element))
    return Deidentification(
        profile=f"{BASIC_PROFILE[1]} (DICOM PS3.15 E.1, {BASIC_PROFILE[0]})",
        table=f"PS3.15 Table E.1-1 as the dicom-anonymizer package carries it ({TABLE_EDITION})",
        options=tuple(f"{name} ({code})" for code, name in OPTION_CODES.values()),
        doors=(
            "pacsnode export-media --deidentify",
            "routing rules with deidentify",
            "the REST API's and the web UI's de-identified export",
        ),
        safe_private=tuple(
            (r.creator, f"({r.group:04X},xx{r.element:02X})", r.vr, r.meaning) for r in rows
        ),
    )
