"""Bundle certification (spec §9: "All extensions require: new version, explicit authorization,
regression certification"): pinned outcomes, the certificate and its Ed25519 approval.

Pure: outcomes of results, their comparison and digests, the certificate's signed payload, and its
verification against the bundle as loaded. Reading corpora and key files is the CLI's
(``engine/cli/corpus.py``, ``engine/cli/certify.py``); format in docs/certification.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .bundle import Bundle
from .models import ExecutionResult
from .numbers import canonical_json
from .version import __version__

__all__ = [
    "CERTIFICATE_KIND",
    "Approver",
    "CertificateProblem",
    "OUTCOME_FIELDS",
    "certificate_digest",
    "certificate_payload",
    "check_certificate",
    "deciding_gate",
    "differing_fields",
    "key_id",
    "outcome_of",
    "outcomes_digest",
    "sign_certificate",
]

CERTIFICATE_KIND = "ep4.io/v1 BundleCertificate"
# What a case pins: the outcome, the rule and gate that decided it, the order that would be sent, and
# the shadow gates that would have refused it (they never decide, but a change in them is reviewed).
OUTCOME_FIELDS = ("result", "reason_code", "rule", "gate", "order", "shadow")


def deciding_gate(result: ExecutionResult) -> str | None:
    """The enforced gate whose failure gave the result (None when the engine itself decided)."""
    if result.rule not in (3, 4):
        return None
    for g in result.gate_trace:
        if not g.passed and g.rule == result.rule and getattr(g, "enforcement", None) is None:
            return g.id
    return None


def outcome_of(result: ExecutionResult) -> dict[str, Any]:
    """The pinned form of a result (JSON-ready; decimals as the text the order carries)."""
    return {
        "result": result.result,
        "reason_code": result.reason_code,
        "rule": result.rule,
        "gate": deciding_gate(result),
        "order": result.order,
        "shadow": sorted(g.id for g in result.gate_trace if not g.passed and getattr(g, "enforcement", None) is not None),
    }


def differing_fields(pinned: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """The outcome fields that differ. A pin written before a field existed (an older corpus: only
    result and reason_code) is compared on the fields it has."""
    return [f for f in OUTCOME_FIELDS if f in pinned and pinned[f] != actual.get(f)]


def outcomes_digest(outcomes: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 of the canonical JSON of {case name: outcome}: what the corpus measured."""
    return "sha256:" + hashlib.sha256(canonical_json(dict(sorted(outcomes.items()))).encode("utf-8")).hexdigest()


# --- keys and signatures ---


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of sha256 of its raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


@dataclass(frozen=True)
class Approver:
    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def __repr__(self) -> str:
        return f"Approver({self.name!r}, key {self.key_id})"


def certificate_payload(
    bundle: Bundle, *, corpus_paths: Iterable[str], corpus_digest: str, cases: int, skipped: int, outcomes: str,
) -> dict[str, Any]:
    """Everything a certificate states, before its approval."""
    return {
        "kind": CERTIFICATE_KIND,
        "bundle": {
            "name": bundle.name,
            "version": bundle.version,
            "digest": bundle.digest,
            "sources": [{"file": f, "sha256": d} for f, d in bundle.sources],
        },
        "corpus": {"paths": list(corpus_paths), "digest": corpus_digest, "cases": cases, "skipped": skipped},
        "outcomes_digest": outcomes,
        "ep4_version": __version__,
    }


def _signed_bytes(payload: Mapping[str, Any], approval: Mapping[str, Any]) -> bytes:
    unsigned = {**payload, "approval": {k: v for k, v in approval.items() if k != "signature"}}
    return canonical_json(unsigned).encode("utf-8")


def sign_certificate(payload: Mapping[str, Any], key: Ed25519PrivateKey, *, approver: str, signed_at: str) -> dict[str, Any]:
    """The certificate: the payload and an approval signed over both (canonical JSON)."""
    approval = {"approver": approver, "key_id": key_id(key.public_key()), "signed_at": signed_at}
    signature = key.sign(_signed_bytes(payload, approval))
    return {**payload, "approval": {**approval, "signature": base64.b64encode(signature).decode("ascii")}}


def certificate_digest(certificate: Mapping[str, Any]) -> str:
    """What results and audit records name: sha256 of the certificate's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(dict(certificate)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CertificateProblem:
    kind: str  # "malformed" | "signature" | "unknown-key" | "stale" | "version"
    message: str


def check_certificate(
    certificate: Any, bundle: Bundle, approvers: Iterable[Approver], *, corpus_digest: str | None = None,
    outcomes: str | None = None,
) -> list[CertificateProblem]:
    """Every reason ``certificate`` does not certify ``bundle`` as loaded (empty: it does).

    Checked always: the shape, the approval (a valid Ed25519 signature by a listed approver, a
    ``signed_at`` that is a real UTC time written ``YYYY-MM-DDTHH:MM:SSZ``), the bundle's name,
    version, digest and source files, and the ep4 version. The corpus and outcome digests are
    checked when given (``ep4 certify`` measures them; ``ep4 execute`` does not). ``signed_at`` is
    not compared with any clock: the signing host's and the checking host's may differ, and a
    certificate's authority is its signature, which covers ``signed_at``."""
    if not isinstance(certificate, dict) or certificate.get("kind") != CERTIFICATE_KIND:
        return [CertificateProblem("malformed", f"not an ep4 bundle certificate (kind must be {CERTIFICATE_KIND!r})")]
    try:
        payload = {k: v for k, v in certificate.items() if k != "approval"}
        approval = certificate["approval"]
        cb = certificate["bundle"]
        wanted = {"name": cb["name"], "version": cb["version"], "digest": cb["digest"],
                  "sources": [(s["file"], s["sha256"]) for s in cb["sources"]]}
        if not all(isinstance(v, str) for pair in wanted["sources"] for v in pair):
            raise TypeError("bundle.sources: every file and sha256 must be text")
        corpus, stated_outcomes, version = certificate["corpus"], certificate["outcomes_digest"], certificate["ep4_version"]
        if not isinstance(corpus, dict) or not isinstance(approval, dict):
            raise TypeError("corpus and approval must be objects")
        signature = base64.b64decode(approval["signature"], validate=True)
        signer = approval["key_id"]
        if not isinstance(signer, str) or not isinstance(approval.get("approver"), str):
            raise TypeError("approval.key_id and approval.approver must be text")
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        return [CertificateProblem("malformed", f"the certificate is missing or garbles a field ({type(exc).__name__}: {exc})")]
    problems: list[CertificateProblem] = []
    signed_at = _utc_time(approval.get("signed_at"))
    if signed_at is None:
        problems.append(CertificateProblem(
            "malformed", f"approval.signed_at {approval.get('signed_at')!r} is not a UTC time YYYY-MM-DDTHH:MM:SSZ"))
    known = {a.key_id: a for a in approvers}
    approver = known.get(signer)
    if approver is None:
        problems.append(CertificateProblem("unknown-key", f"signed by key {signer}, which is not in the approvers file"))
    else:
        try:
            approver.public_key.verify(signature, _signed_bytes(payload, approval))
        except InvalidSignature:
            problems.append(CertificateProblem(
                "signature", f"the signature by {approver.name} (key {signer}) does not match the certificate's content: it was edited after signing"
            ))
        if approval["approver"] != approver.name:  # the name shown is the approvers file's, never the certificate's own
            problems.append(CertificateProblem(
                "approver", f"the certificate names its approver {approval['approver']!r}, but the approvers file lists key "
                f"{signer} as {approver.name!r}"
            ))
    if (wanted["name"], wanted["version"]) != (bundle.name, bundle.version):
        problems.append(CertificateProblem(
            "stale", f"it certifies {wanted['name']} {wanted['version']}, not {bundle.name} {bundle.version}"
        ))
    if wanted["digest"] != bundle.digest:
        problems.append(CertificateProblem("stale", f"bundle digest {wanted['digest']} certified, the bundle is {bundle.digest}"))
    changed = _changed_sources(dict(wanted["sources"]), dict(bundle.sources))
    if changed:
        problems.append(CertificateProblem("stale", f"files changed since it was signed: {', '.join(changed)}"))
    if version != __version__:
        problems.append(CertificateProblem("version", f"made by ep4 {version}; this is ep4 {__version__}: certify again"))
    if corpus_digest is not None and corpus.get("digest") != corpus_digest:
        problems.append(CertificateProblem("stale", f"corpus digest {corpus.get('digest')} certified, the corpus is now {corpus_digest}"))
    if outcomes is not None and stated_outcomes != outcomes:
        problems.append(CertificateProblem("stale", f"outcomes digest {stated_outcomes} certified, the corpus now gives {outcomes}"))
    return problems


def _utc_time(text: Any) -> datetime | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (what ``ep4 certify --sign`` writes) as a time; None for anything else."""
    if not isinstance(text, str) or len(text) != 20 or not text.isascii():
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def _changed_sources(certified: dict[str, str], now: dict[str, str]) -> list[str]:
    out = [f"{f} (edited)" for f in certified if f in now and certified[f] != now[f]]
    out += [f"{f} (no longer included)" for f in certified if f not in now]
    out += [f"{f} (newly included)" for f in now if f not in certified]
    return out
