"""``ep4 certify``, ``ep4 diff`` and ``ep4 keys new``: the bundle lifecycle of spec §9 (issue 9).

Imperative shell around :mod:`engine.certification`: reads corpora, key and approver files,
certificates; runs cases (in parallel with ``--jobs``); prints what a reviewer acts on.
Format and workflow: docs/certification.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..bundle import Bundle
from ..certification import (
    OUTCOME_FIELDS,
    Approver,
    check_certificate,
    certificate_digest,
    certificate_payload,
    differing_fields,
    key_id,
    outcome_of,
    outcomes_digest,
    sign_certificate,
)
from ..errors import InputError
from ..numbers import canonical_json
from .corpus import Case, Corpus, CorpusError, case_inputs, load_corpus, write_pin

__all__ = [
    "certificate_path",
    "live_certificate",
    "load_approvers",
]


# --- files: certificates, approvers, keys ---


def certificate_path(bundle_path: str | Path, given: str | None = None) -> Path:
    """The certificate next to the bundle: ``NAME.yaml`` -> ``NAME.cert.json`` (or ``--certificate``)."""
    return Path(given) if given else Path(bundle_path).with_suffix(".cert.json")


def approvers_path(bundle_path: str | Path, given: str | None = None) -> Path:
    """``--approvers``, else ``$EP4_APPROVERS``, else ``approvers.json`` next to the bundle (``ep4 certify``:
    a CI job signs with the keys its repository lists)."""
    return Path(given or os.environ.get("EP4_APPROVERS") or Path(bundle_path).parent / "approvers.json")


def live_approvers_path(given: str | None = None) -> Path:
    """Whose signatures a live run trusts: ``--approvers``, else ``$EP4_APPROVERS``, else the approvers
    file shipped with this ep4 (the maintainers' key). Never a file found next to the bundle: whoever can
    write a bundle's directory could list their own key there and approve their own bundle."""
    from ..paths import default_approvers_path

    return Path(given or os.environ.get("EP4_APPROVERS") or default_approvers_path())


def load_approvers(path: Path) -> list[Approver]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"approvers file {path} not found (--approvers FILE or EP4_APPROVERS)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"approvers file {path}: cannot read: {exc}") from None
    entries = data.get("approvers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(f'approvers file {path}: expected {{"approvers": [{{"name": ..., "public_key": "ed25519:BASE64"}}]}}')
    out = []
    for i, e in enumerate(entries):
        try:
            name, key = e["name"], e["public_key"]
            if not (isinstance(name, str) and name and isinstance(key, str) and key.startswith("ed25519:")):
                raise ValueError("name and an ed25519:BASE64 public_key are required")
            out.append(Approver(name, Ed25519PublicKey.from_public_bytes(base64.b64decode(key[len("ed25519:"):], validate=True))))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"approvers file {path}: entry {i + 1}: {exc}") from None
        if [a.key_id for a in out].count(out[-1].key_id) > 1:  # one key, two names: which approved?
            raise InputError(f"approvers file {path}: entry {i + 1}: key {out[-1].key_id} is listed twice")
    return out


def _read_certificate(path: Path) -> Any:
    """The certificate file's object; None when there is no file; {"unreadable": why} for a file that
    cannot be read or does not hold a JSON object with an object ``approval`` and ``bundle``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"}
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("approval", "bundle")):
        return {"unreadable": "not a certificate: expected a JSON object with an 'approval' and a 'bundle' object"}
    return data


def _load_private_key(path: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise InputError(f"signing key {path} not found (make one with `ep4 keys new --out FILE`)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"signing key {path}: not an unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"signing key {path}: not an Ed25519 key")
    return key


def _public_entry(name: str, key: Any) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"name": name, "public_key": "ed25519:" + base64.b64encode(raw).decode("ascii")}


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A new Ed25519 approval key: the private key to ``--out`` (mode 0600, never printed), the
    public entry for the approvers file on stdout."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    out = Path(args.out)
    if out.exists():
        raise InputError(f"{out} exists; ep4 never overwrites a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    entry = _public_entry(args.name, key)
    print(f"private key written to {out} (mode 0600; keep it out of the repository)", file=sys.stderr)
    print(f"key id {key_id(key.public_key())}; add this entry to the approvers file:", file=sys.stderr)
    print(json.dumps(entry))
    return 0


# --- running a corpus ---


@dataclass
class CaseRun:
    name: str
    outcome: dict[str, Any] | None
    error: str | None = None


_WORKER: dict[str, Any] = {}
_CONFIGS: dict[tuple[int, int, str], tuple[Any, Any]] = {}


def dry_run_config(bundle: Bundle, constraints: Any, evaluator: str) -> Any:
    """The dry-run Config of (bundle, snapshot, evaluator), one per distinct snapshot object: a
    Config computes the constraints digest, which a corpus of cases would otherwise repeat per case."""
    from ..pipeline import Config

    key = (id(bundle), id(constraints), evaluator)
    held = _CONFIGS.get(key)
    if held is None or held[0] is not constraints or held[1].bundle is not bundle:
        if len(_CONFIGS) > 256:
            _CONFIGS.clear()
        held = _CONFIGS[key] = (constraints, Config(bundle, constraints, "dry-run", evaluator=evaluator))
    return held[1]


def _run_one(bundle: Bundle, case: Case, constraints: Any, evaluator: str) -> CaseRun:
    from ..pipeline import evaluate

    try:
        raw, context, case_constraints, state = case_inputs(case, constraints)
    except CorpusError as exc:
        return CaseRun(case.name, None, str(exc))
    ev = evaluate(raw, context, dry_run_config(bundle, case_constraints, evaluator), state)
    assert ev.result is not None
    return CaseRun(case.name, outcome_of(ev.result))


def _worker_run(indexes: list[int]) -> list[CaseRun]:
    w = _WORKER
    return [_run_one(w["bundle"], w["cases"][i], w["constraints"], w["evaluator"]) for i in indexes]


def run_corpus(
    bundle: Bundle, cases: Sequence[Case], *, jobs: int = 1, evaluator: str = "compiled", progress: Callable[[int], None] | None = None,
) -> list[CaseRun]:
    """Every case through Rules 1-4 in dry-run mode (the pinned outcome is what Rules 1-4 decide and
    the order they would send), in order; ``jobs`` > 1 forks that many workers."""
    from .inputs import load_constraints

    constraints = load_constraints(None, None)
    if jobs <= 1 or len(cases) < 64:
        out = []
        for c in cases:
            out.append(_run_one(bundle, c, constraints, evaluator))
            if progress:
                progress(1)
        return out
    import multiprocessing

    _WORKER.update(bundle=bundle, cases=list(cases), constraints=constraints, evaluator=evaluator)
    chunk = max(16, min(512, len(cases) // (jobs * 8) or 16))
    batches = [list(range(i, min(i + chunk, len(cases)))) for i in range(0, len(cases), chunk)]
    out = []
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for runs in pool.imap(_worker_run, batches):
            out.extend(runs)
            if progress:
                progress(len(runs))
    return out


def _progress_bar(total: int, enabled: bool) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A tqdm bar on stderr when it is a terminal, shown only once the run passes a second."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        width = 0
    # a terminal that reports no size (a bare pty) gets 80 columns rather than an empty bar
    bar = tqdm(total=total, unit="case", file=sys.stderr, delay=1.0, leave=False, ncols=None if width else 80)
    return bar.update, bar.close


# --- differences a person can act on ---


def _fmt_outcome(o: dict[str, Any] | None) -> str:
    if o is None:
        return "(not pinned)"
    where = f"rule {o.get('rule')}" if o.get("rule") is not None else "no rule"
    if o.get("gate"):
        where += f", {o['gate']}"
    return f"{o.get('result')} {o.get('reason_code')} ({where})"


def _gate_reads(bundle: Bundle, case: Case, gate_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """For each gate: the values it read in this case under ``bundle`` (as `ep4 explain` shows them)."""
    from ..activation import build_activation
    from ..authorization_gate import read_decision
    from ..cel import from_cel
    from ..intent import IntentError, resolve_intent
    from ..schema_validation import SchemaFailure, schema_validation
    from .explain import _fmt, _lookup
    from .inputs import load_constraints

    wanted = [bundle.gate(g) for g in gate_ids]
    wanted = [g for g in wanted if g is not None]
    if not wanted:
        return {}
    try:
        raw, context, constraints, state = case_inputs(case, load_constraints(None, None))
        checked = schema_validation(read_decision(raw).data, context)
        if isinstance(checked, SchemaFailure):
            return {}
        action = checked.action
        intent = resolve_intent(action, context)
    except (CorpusError, IntentError, AttributeError):
        return {}
    sc = constraints.symbols.get(intent.symbol) if intent.symbol else None
    activation = build_activation(action=action, intent=intent, context=context, bundle=bundle, state=state, constraints=sc)
    data = {k: from_cel(v) for k, v in activation.items()}
    return {g.id: {p: _fmt(_lookup(data, p)) for p in g.expression.paths} for g in wanted}


@dataclass
class Difference:
    case: str
    pinned: dict[str, Any] | None
    actual: dict[str, Any]
    fields: list[str]
    gates: list[dict[str, Any]] = field(default_factory=list)  # {id, before, after, read}

    def as_json(self) -> dict[str, Any]:
        return {"case": self.case, "pinned": self.pinned, "actual": self.actual, "fields": self.fields, "gates": self.gates}


def _explain_difference(bundle: Bundle, case: Case, pinned: dict[str, Any] | None, actual: dict[str, Any], fields: list[str]) -> Difference:
    d = Difference(case.name, pinned, actual, fields)
    before, after = (pinned or {}).get("gate"), actual.get("gate")
    flips: list[tuple[str, str, str]] = []
    if before != after:
        if before:
            flips.append((before, "fail", "pass" if bundle.gate(before) else "(not in this bundle)"))
        if after:
            flips.append((after, "pass", "fail"))
    for s in sorted(set((pinned or {}).get("shadow", [])) ^ set(actual.get("shadow", []))):
        flips.append((s, "fail" if s in (pinned or {}).get("shadow", []) else "pass", "pass" if s not in actual.get("shadow", []) else "fail"))
    reads = _gate_reads(bundle, case, [g for g, _, _ in flips])
    d.gates = [{"id": g, "before": b, "after": a, "read": reads.get(g, {})} for g, b, a in flips]
    return d


# --- ep4 certify ---

_PIN_NEEDS = {"result", "reason_code"}  # what every pin holds (an older corpus pinned only these)
_PIN_FIELDS = set(OUTCOME_FIELDS)


@dataclass
class CertifyReport:
    bundle: Bundle
    bundle_path: str
    corpus: Corpus
    runs: int
    skipped: list[tuple[str, str]]
    differences: list[Difference]
    repinned: list[str]
    certificate: dict[str, Any]  # {path, status, problems, signer, digest}
    discipline: list[str]  # version-discipline failures
    seconds: float
    jobs: int
    completed: int = 0  # --update: pins that only lacked fields, completed (same outcome, more detail)
    ran: list[str] = field(default_factory=list)  # the cases run, in order
    not_repinned: str = ""  # --update refused: why

    @property
    def failed(self) -> bool:
        return bool((self.differences and not self.repinned) or self.discipline or self.certificate.get("problems"))


def cmd_certify(args: argparse.Namespace) -> int:
    from .inputs import load_config_bundle

    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    if args.sign and args.outcomes_only:
        raise InputError("--sign makes a certificate; --outcomes-only skips certificates")
    bundle = load_config_bundle(args.bundle)
    corpus = load_corpus(args.cases)
    path = Path(args.bundle) if args.bundle else None
    mine = [c for c in corpus.cases if not c.own_bundle or _pinned_to(c, path)]
    skipped = [(c.name, f"pinned to its own bundle {c.own_bundle}") for c in corpus.cases if c.own_bundle and not _pinned_to(c, path)]
    started = time.monotonic()
    update, close = _progress_bar(len(mine), not args.no_progress)
    try:
        runs = run_corpus(bundle, mine, jobs=args.jobs, evaluator=args.evaluator, progress=update)
    finally:
        close()
    seconds = time.monotonic() - started
    unusable = [r.error for r in runs if r.error]
    if unusable:
        raise CorpusError("; ".join(unusable[:5]) + (f" (and {len(unusable) - 5} more)" if len(unusable) > 5 else ""))
    by_name = {c.name: c for c in mine}
    outcomes = {r.name: r.outcome for r in runs}
    differences = []
    for r in runs:
        case = by_name[r.name]
        pinned = case.expect
        if pinned is not None and not (_PIN_NEEDS <= pinned.keys() <= _PIN_FIELDS):
            fields = ["expect"]  # pins nothing ({}), or a misspelt field ("reasonCode"): no pin, a difference
        else:
            fields = ["expect"] if pinned is None else differing_fields(pinned, r.outcome)
        if fields:
            differences.append(_explain_difference(bundle, case, pinned, r.outcome, fields))
    measured = outcomes_digest(outcomes)
    cert_path = certificate_path(args.bundle or bundle.path, args.certificate)
    old = _read_certificate(cert_path)
    if args.first_release and not args.sign:
        raise InputError("--first-release goes with --sign: it says the certificate being signed is the bundle's first")
    # --outcomes-only compares outcomes with the pins and nothing else: no certificate, no version discipline.
    # Decided before anything is re-pinned: a run that fails it writes no pin (re-pinned cases would no
    # longer show the changed outcomes the version rule is about)
    discipline = [] if args.outcomes_only else _version_discipline(
        old, bundle, [d.case for d in differences], measured, cert_path=cert_path, signing=bool(args.sign),
        first_release=args.first_release)
    repinned: list[str] = []
    completed = 0
    if args.update and discipline:
        not_repinned = "fix the version problem(s) first: nothing was re-pinned"
    else:
        not_repinned = ""
    if args.update and not discipline:
        for d in differences:
            write_pin(by_name[d.case], d.actual)
            repinned.append(d.case)
        # pins that only lacked fields (an older corpus) are completed too: same outcome, more detail
        for r in runs:
            case = by_name[r.name]
            if case.expect is not None and case.expect != r.outcome and r.name not in repinned:
                write_pin(case, r.outcome)
                completed += 1
        corpus = load_corpus(args.cases)  # the corpus digest covers the pins
    certificate: dict[str, Any] = {"path": str(cert_path)}
    if not args.outcomes_only:
        approvers_file = approvers_path(args.bundle or bundle.path, args.approvers)
        approvers = load_approvers(approvers_file)
        if args.sign and not discipline and (not differences or repinned):
            key = _load_private_key(args.sign)
            named = next((a.name for a in approvers if a.key_id == key_id(key.public_key())), None)
            if named is None:
                raise InputError(
                    f"the signing key is not in the approvers file {approvers_file}; add "
                    f"{json.dumps(_public_entry('YOUR NAME', key))} there (the operator's file decides who may approve)"
                )
            payload = certificate_payload(bundle, corpus_paths=args.cases, corpus_digest=corpus.digest, cases=len(mine),
                                          skipped=len(skipped), outcomes=measured)
            signed = sign_certificate(payload, key, approver=named, signed_at=_utc_now())
            tmp = cert_path.with_name(f".{cert_path.name}.tmp")
            try:
                tmp.write_text(json.dumps(signed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
                tmp.replace(cert_path)
            except OSError as exc:
                raise InputError(f"cannot write the certificate {cert_path}: {exc.strerror or exc}") from None
            certificate["written"] = True
            old = signed
        elif args.sign:
            certificate["not_signed"] = (
                "fix the version problem(s) first (VERSION above)" if discipline
                else "the corpus has differences: review them, re-pin with --update, then sign"
            )
        if old is None:
            certificate.update(status="missing", problems=[f"no certificate at {cert_path}: sign one with `ep4 certify {args.bundle or bundle.path} --cases ... --sign KEYFILE`"])
        elif "unreadable" in old:
            certificate.update(status="unreadable", problems=[f"{cert_path}: {old['unreadable']}"])
        else:
            problems = check_certificate(old, bundle, approvers, corpus_digest=corpus.digest, outcomes=measured)
            certificate.update(
                status="valid" if not problems else "invalid",
                problems=[p.message for p in problems],
                signer=(old.get("approval") or {}).get("approver"),
                signed_at=(old.get("approval") or {}).get("signed_at"),
                digest=certificate_digest(old),
            )
    report = CertifyReport(bundle, args.bundle or bundle.path, corpus, len(runs), skipped, differences, repinned, certificate,
                           discipline, seconds, args.jobs, completed, ran=[r.name for r in runs], not_repinned=not_repinned)
    text = {"text": _text, "markdown": _markdown, "json": _json}[args.format](report)
    if args.junit:  # before the report: a report that says "ok" and then an error is two answers
        try:
            Path(args.junit).write_text(_junit(report), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write the JUnit report {args.junit}: {exc.strerror or exc}") from None
    sys.stdout.write(text)
    return 1 if report.failed else 0


def _pinned_to(case: Case, bundle_path: Path | None) -> bool:
    """A case pinned (``"bundle"``, relative to the case file) to the bundle being certified runs."""
    if bundle_path is None or not case.own_bundle:
        return False
    try:
        return (case.path.parent / case.own_bundle).resolve() == bundle_path.resolve()
    except (OSError, RuntimeError):
        return False


def _utc_now() -> str:
    """The time a certificate is signed at, and checked against (``approval.signed_at``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")


def _version_key(version: Any) -> tuple[Any, ...] | None:
    """Semantic-version precedence (semver.org §11) of ``metadata.version``: MAJOR.MINOR.PATCH as
    numbers; a pre-release below its release, its dot-separated identifiers compared one by one
    (numeric ones as numbers and below text ones, text ones in ASCII order, fewer identifiers first);
    build metadata ignored. None for text that is not a version."""
    m = _SEMVER.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        return None
    core = (int(m[1]), int(m[2]), int(m[3]))
    if m[4] is None:
        return (core, 1, ())
    ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in m[4].split("."))
    return (core, 0, ids)


def _version_discipline(old: Any, bundle: Bundle, changed_cases: list[str], measured: str, *, cert_path: Path | None = None,
                        signing: bool = False, first_release: bool = False) -> list[str]:
    """Spec §9 "new version": a change to what the certificate covers needs a new, higher
    metadata.version. Signing needs the last certificate to compare with: where none can be read
    (deleted, emptied, another bundle's, or a fresh --certificate path), --sign refuses unless
    --first-release says the bundle was never certified (review of issue 9: deleting the
    certificate let a changed bundle be signed under its old version)."""
    readable = isinstance(old, dict) and isinstance(old.get("bundle"), dict) and "unreadable" not in old
    ob = old["bundle"] if readable else {}
    if first_release:
        if readable and ob.get("name") == bundle.name:
            return [f"--first-release, but {cert_path} certifies {bundle.name} {ob.get('version')}: this is not its first "
                    "certificate; leave --first-release out"]
        return []
    if not readable or ob.get("name") != bundle.name:
        if not signing:
            return []  # nothing to compare with: the certificate check says what is missing
        what = ("holds no certificate" if old is None else f"is not a readable certificate ({old['unreadable']})" if not readable
                else f"certifies another bundle ({ob.get('name')})")
        return [f"{cert_path} {what}, so metadata.version cannot be checked against the last certified one: restore the "
                f"bundle's last certificate (a change to a certified bundle needs a new version), or pass --first-release "
                f"if {bundle.name} was never certified"]
    if ob.get("version") != bundle.version:
        new, last = _version_key(bundle.version), _version_key(ob.get("version"))
        if new is None or last is None or new <= last:
            return [f"metadata.version {bundle.version} is not above the certified {ob.get('version')}: a new version "
                    "must be higher than the last certified one"]
        return []  # a new, higher version: nothing to compare against
    out = []
    certified_sources = {s.get("file"): s.get("sha256") for s in (ob.get("sources") if isinstance(ob.get("sources"), list) else []) if isinstance(s, dict) and isinstance(s.get("file"), str)}
    content_changed = ob.get("digest") != bundle.digest or certified_sources != dict(bundle.sources)
    outcomes_changed = bool(changed_cases) or old.get("outcomes_digest") != measured
    if outcomes_changed and (changed_cases or content_changed):
        listed = ", ".join(changed_cases[:20]) + (f" (and {len(changed_cases) - 20} more)" if len(changed_cases) > 20 else "")
        out.append(
            f"outcomes changed on the corpus but metadata.version is still {bundle.version}"
            + (f": {listed}" if listed else "")
            + "; bump the version, review the differences, re-pin (--update) and re-sign"
        )
    elif content_changed:
        out.append(
            f"content changed since the certificate, outcomes unchanged on the corpus; metadata.version is still "
            f"{bundle.version}: bump it and re-sign (`ep4 certify ... --sign KEYFILE`)"
        )
    return out


def _text(r: CertifyReport) -> str:
    b = r.bundle
    lines = [f"ep4 certify {r.bundle_path}: {b.name} {b.version} ({b.digest})"]
    lines.append(
        f"corpus {', '.join(r.corpus.roots)}: {r.runs} cases run in {r.seconds:.2f} s"
        f" ({r.runs / r.seconds if r.seconds else 0:,.0f} cases/s, {r.jobs} job{'s' if r.jobs != 1 else ''})"
        + (f", {len(r.skipped)} skipped (pinned to their own bundle)" if r.skipped else "")
    )
    for d in r.differences:
        tag = "REPINNED" if d.case in r.repinned else "DIFF"
        lines.append(f"{tag} {d.case}: {_fmt_outcome(d.pinned)} -> {_fmt_outcome(d.actual)}")
        for f in d.fields:
            if f == "order":
                lines.append(f"     order: {_order_change((d.pinned or {}).get('order'), d.actual.get('order'))}")
            elif f == "shadow":
                lines.append(f"     shadow: {json.dumps((d.pinned or {}).get(f))} -> {json.dumps(d.actual.get(f))}")
        for g in d.gates:
            read = ", ".join(f"{k} = {v}" for k, v in g["read"].items())
            lines.append(f"     gate {g['id']}: {g['before']} -> {g['after']}" + (f"; read {read}" if read else ""))
    for m in r.discipline:
        lines.append(f"VERSION {m}")
    if r.not_repinned:
        lines.append(f"NOT RE-PINNED (--update): {r.not_repinned}")
    c = r.certificate
    if c.get("not_signed"):
        lines.append(f"NOT SIGNED (--sign): {c['not_signed']}")
    if "status" in c:
        if c["status"] == "valid":
            lines.append(f"certificate {c['path']}: valid{' (written)' if c.get('written') else ''}, approved by {c['signer']} at {c['signed_at']} ({c['digest']})")
        else:
            lines.append(f"certificate {c['path']}: {c['status'].upper()}")
            lines += [f"     {p}" for p in c["problems"]]
    diffs = len(r.differences) - len(r.repinned)
    verdict = "FAILED" if r.failed else "ok"
    lines.append(
        f"{verdict}: {diffs} difference{'s' if diffs != 1 else ''} in {r.runs} cases"
        + (f", {len(r.repinned)} re-pinned" if r.repinned else "")
        + (f", {r.completed} pins completed (same outcome, fields added)" if r.completed else "")
        + (f", certificate {r.certificate['status']}" if "status" in r.certificate else "")
        + (f", {len(r.discipline)} version problem(s)" if r.discipline else "")
    )
    return "\n".join(lines) + "\n"


def _order_summary(o: Any) -> str:
    if not isinstance(o, dict):
        return "none"
    p = o.get("params") or {}
    what = " ".join(str(p[k]) for k in ("symbol", "side", "positionSide", "type", "quantity", "price") if k in p)
    return f"{o.get('method')} {o.get('path')} {what}".strip()


def _order_change(old: Any, new: Any) -> str:
    """What changed in the order that would be sent, in a line: the order itself when one side has
    none, otherwise only the parameters that differ."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{_order_summary(old)} -> {_order_summary(new)}"
    a, b = old.get("params") or {}, new.get("params") or {}
    changed = [f"{k} {a.get(k, '(none)')} -> {b.get(k, '(none)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("method") != new.get("method") or old.get("path") != new.get("path"):
        changed.insert(0, f"{old.get('method')} {old.get('path')} -> {new.get('method')} {new.get('path')}")
    return "; ".join(changed) or "same"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(r: CertifyReport) -> str:
    b = r.bundle
    out = [f"### ep4 certify: {b.name} {b.version}", "", f"Bundle digest `{b.digest}`; corpus `{', '.join(r.corpus.roots)}` "
           f"({r.runs} cases, digest `{r.corpus.digest}`).", ""]
    if r.differences:
        out += ["| case | pinned | now | gates that flipped (values read) |", "|---|---|---|---|"]
        for d in r.differences:
            gates = "; ".join(f"`{g['id']}` {g['before']} → {g['after']}" + (" (" + ", ".join(f"{k} = {v}" for k, v in g["read"].items()) + ")" if g["read"] else "")
                              for g in d.gates)
            out.append(f"| `{d.case}` | {_md_cell(_fmt_outcome(d.pinned))} | {_md_cell(_fmt_outcome(d.actual))} | {_md_cell(gates) or '—'} |")
        out.append("")
    else:
        out += ["No outcome differences.", ""]
    out += [f"* version: {m}" for m in r.discipline]
    if r.not_repinned:
        out.append(f"* **not re-pinned** (--update): {r.not_repinned}")
    c = r.certificate
    if c.get("not_signed"):
        out.append(f"* **not signed** (--sign): {c['not_signed']}")
    if "status" in c:
        out.append(f"* certificate `{c['path']}`: **{c['status']}**" + (f", approved by {c['signer']} at {c['signed_at']}" if c["status"] == "valid" else ""))
        out += [f"  * {p}" for p in c.get("problems", [])]
    out.append(f"\n**{'FAILED' if r.failed else 'ok'}**")
    return "\n".join(out) + "\n"


def _json(r: CertifyReport) -> str:
    b = r.bundle
    return json.dumps({
        "bundle": {"path": r.bundle_path, "name": b.name, "version": b.version, "digest": b.digest},
        "corpus": {"paths": r.corpus.roots, "digest": r.corpus.digest, "cases": r.runs, "skipped": [n for n, _ in r.skipped]},
        "seconds": round(r.seconds, 3),
        "differences": [d.as_json() for d in r.differences],
        "repinned": r.repinned,
        "pins_completed": r.completed,
        "not_repinned": r.not_repinned or None,
        "version_problems": r.discipline,
        "certificate": r.certificate,
        "ok": not r.failed,
    }, indent=1, ensure_ascii=False) + "\n"


def _junit(r: CertifyReport) -> str:
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name=f"ep4 certify {r.bundle.name} {r.bundle.version}", tests=str(r.runs + 1),
                       failures=str(len(r.differences) + (1 if r.certificate.get("problems") or r.discipline else 0)),
                       time=f"{r.seconds:.3f}")
    diffs = {d.case: d for d in r.differences}
    for name in sorted(set(r.ran)):  # every case run, those pinned to this very bundle included
        tc = ET.SubElement(suite, "testcase", classname=r.bundle.name, name=name)
        d = diffs.get(name)
        if d is not None:
            f = ET.SubElement(tc, "failure", message=f"{_fmt_outcome(d.pinned)} -> {_fmt_outcome(d.actual)}")
            f.text = "\n".join(f"gate {g['id']}: {g['before']} -> {g['after']} " + ", ".join(f"{k} = {v}" for k, v in g["read"].items()) for g in d.gates)
    tc = ET.SubElement(suite, "testcase", classname=r.bundle.name, name="certificate and version")
    problems = list(r.certificate.get("problems", [])) + r.discipline
    if problems:
        ET.SubElement(tc, "failure", message=problems[0]).text = "\n".join(problems)
    return ET.tostring(suite, encoding="unicode") + "\n"


# --- the certificate in the live modes ---


def live_certificate(bundle: Bundle, bundle_path: str | Path, *, certificate: str | None, approvers: str | None,
                     allow_uncertified: bool) -> dict[str, str]:
    """What ``binance`` / ``binance-testnet`` execution records about the bundle's certificate:
    {"certificate": digest} when it is valid; {"uncertified": reason} under --allow-uncertified;
    otherwise InputError (exit 2) saying why and how to fix it."""
    path = certificate_path(bundle_path, certificate)
    cert = _read_certificate(path)
    try:
        listed = load_approvers(live_approvers_path(approvers))
    except InputError as exc:
        listed, why = [], str(exc)
    else:
        why = ""
    if cert is None:
        why = f"no certificate at {path}"
    elif "unreadable" in cert:
        why = f"{path}: {cert['unreadable']}"
    elif not why:
        problems = check_certificate(cert, bundle, listed)
        if not problems:
            return {"certificate": certificate_digest(cert)}
        why = f"{path}: " + "; ".join(p.message for p in problems)
    if allow_uncertified:
        return {"uncertified": why}
    raise InputError(
        f"{bundle.name} {bundle.version} is not certified for live trading: {why}. Certify it "
        f"(`ep4 certify {bundle_path} --cases tests/cases --sign KEYFILE`), or pass --allow-uncertified "
        "(recorded in every result and audit record)"
    )


# --- ep4 diff ---


def cmd_diff(args: argparse.Namespace) -> int:
    from .inputs import load_config_bundle

    if bool(args.cases) == bool(args.audit):
        raise InputError("ep4 diff needs --cases PATH... or --audit AUDIT.jsonl (one of them)")
    if args.cases and (args.constraints or args.leverage_brackets):
        raise InputError("--constraints and --leverage-brackets go with --audit: each case carries its own constraints")
    old, new = load_config_bundle(args.old), load_config_bundle(args.new)
    if args.cases:
        corpus = load_corpus(args.cases)
        cases = [c for c in corpus.cases if not c.own_bundle]
        a = run_corpus(old, cases, jobs=args.jobs)
        b = run_corpus(new, cases, jobs=args.jobs)
        rows = [(c.name, x.outcome, y.outcome, c) for c, x, y in zip(cases, a, b)]
        errors = [x.error or y.error for x, y in zip(a, b) if x.error or y.error]
        if errors:
            raise CorpusError("; ".join(errors[:5]))
        source = f"corpus {', '.join(args.cases)} ({len(cases)} cases)"
    else:
        rows, source = _audit_rows(Path(args.audit), old, new, args.state_dir, args.constraints, args.leverage_brackets)
    report = _diff_report(old, new, rows, source, new_bundle=new)
    sys.stdout.write({"text": _diff_text, "markdown": _diff_markdown, "json": _diff_json}[args.format](report))
    return 1 if report["changed"] or report["settings"] else 0


def recorded_executions(path: Path, state_dir: str | None) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """(line number, record, (decision text, context, state view) or why it cannot be read back)
    for every execution record of an audit log; the state view is rebuilt from the ledger as
    `ep4 replay` does (``state_dir``, default the log's directory)."""
    from ..audit import read_records
    from ..ledger import Ledger
    from ..models import ExecutionContext
    from ..numbers import loads
    from ..replay import recorded_state

    if not path.is_file():
        raise InputError(f"audit log not found (or not a file): {path}")
    ledger = Ledger.open_existing(Path(state_dir) if state_dir else path.parent)
    try:
        for line_no, rec in _records(path, read_records, loads):
            if rec.get("kind") != "execution" or not isinstance(rec.get("input"), dict):
                continue
            try:
                context = ExecutionContext.model_validate(rec["input"]["context"])
                state = recorded_state(rec, ledger)
                raw = rec["input"]["decision_text"]
            except Exception as exc:  # noqa: BLE001 - a record this ep4 cannot read back: say which
                yield line_no, rec, f"cannot read the recorded input ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                continue
            yield line_no, rec, state if isinstance(state, str) else (raw, context, state)
    finally:
        if ledger is not None:
            ledger.close()


def _audit_rows(path: Path, old: Bundle, new: Bundle, state_dir: str | None, constraints_file: str | None = None,
                brackets_file: str | None = None) -> tuple[list[tuple[str, Any, Any, Any]], str]:
    """Each recorded execution's pure input re-evaluated under both bundles, dry-run, with the
    constraints snapshot given (default: the shipped sample). A record decided under other constraints
    (its constraints digest is not the snapshot's: a live run reads the exchange's own) is counted and
    said, since both bundles then judge it against filters it was not decided with."""
    from ..pipeline import evaluate
    from .inputs import load_constraints

    constraints = load_constraints(constraints_file, brackets_file)
    rows = []
    seen = other = 0
    for line_no, rec, inputs in recorded_executions(path, state_dir):
        seen += 1
        if isinstance(inputs, str):
            raise InputError(f"{path}: line {line_no}: {inputs}")
        if rec.get("constraints_digest") != constraints.digest:
            other += 1
        raw, context, state = inputs
        outs = [outcome_of(evaluate(raw, context, dry_run_config(b, constraints, "compiled"), state).result) for b in (old, new)]
        rows.append((f"line {line_no}: {rec.get('policy_decision_id')}/{rec.get('action_id')}", outs[0], outs[1], None))
    source = f"audit log {path} ({seen} recorded executions, re-evaluated in dry-run"
    if other:
        source += (f"; {other} of them were decided under other exchange constraints than {constraints_file or 'the shipped sample'} "
                   f"({constraints.digest}): pass the snapshot they were decided with, --constraints FILE [--leverage-brackets FILE]")
    return rows, source + ")"


def _records(path: Path, read_records: Any, loads: Any) -> Iterable[tuple[int, dict[str, Any]]]:
    for line_no, text in read_records(path):
        try:
            rec = loads(text)
        except (ValueError, RecursionError):
            raise InputError(f"{path}: line {line_no} is not a record; run `ep4 audit verify` first") from None
        if isinstance(rec, dict):
            yield line_no, rec


def _diff_report(old: Bundle, new: Bundle, rows: list[tuple[str, Any, Any, Any]], source: str, *, new_bundle: Bundle) -> dict[str, Any]:
    changed = []
    shadow_blocks: dict[str, list[str]] = {}
    for name, a, b, case in rows:
        for s in b.get("shadow", []):
            gate = new_bundle.gate(s)
            if gate is not None and b["reason_code"] == "DRY_RUN":  # it went through, and the shadow gate would have refused it
                shadow_blocks.setdefault(s, []).append(name)
        # a shadow gate never decides: what it would have refused is reported on its own, below
        fields = [f for f in differing_fields(a, b) if f != "shadow"]
        if fields:
            reads = {}
            if case is not None:
                reads = _gate_reads(new_bundle, case, [g for g in (a.get("gate"), b.get("gate")) if g])
            changed.append({"case": name, "old": a, "new": b, "fields": fields,
                            "gate": b.get("gate") or a.get("gate") or "(engine)", "read": reads})
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in changed:
        groups.setdefault(c["gate"], []).append(c)
    return {
        "old": {"name": old.name, "version": old.version, "digest": old.digest},
        "new": {"name": new.name, "version": new.version, "digest": new.digest},
        "settings": _settings_changes(old, new),
        "source": source, "total": len(rows), "changed": changed,
        "went_through": sum(1 for _, _, b, _ in rows if b["reason_code"] == "DRY_RUN"),
        "by_gate": {g: len(v) for g, v in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))},
        "shadow_would_block": {g: len(v) for g, v in sorted(shadow_blocks.items())},
        "shadow_examples": {g: v[:5] for g, v in sorted(shadow_blocks.items())},
    }


def _settings_changes(old: Bundle, new: Bundle) -> list[dict[str, str]]:
    """Every value of the bundle that differs (its canonical form, leaf by leaf; a gate by its id), but
    ``metadata.version``: what a corpus cannot show, such as the executor's ``postFailure`` and
    ``exchangeClient`` settings (review: turning the forced cancel off showed "0 of 1457 change"), and
    the gates' own text next to what their outcomes show."""
    a, b = _leaves(old.canonical), _leaves(new.canonical)
    absent = "(absent)"
    return [{"path": p, "old": a.get(p, absent), "new": b.get(p, absent)}
            for p in sorted(a.keys() | b.keys()) if p != "metadata.version" and a.get(p) != b.get(p)]


def _leaves(value: Any, path: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    out = {} if out is None else out
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _leaves(value[k], f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(x, dict) and isinstance(x.get("id"), str) for x in value):
        for position, x in enumerate(value):  # a list of gates: by id, so a moved or inserted gate is not every gate after it
            _leaves({k: v for k, v in x.items() if k != "id"}, f"{path}[{x['id']}]", out)
            out[f"{path}[{x['id']}].position"] = str(position)
    else:
        out[path] = canonical_json(value)
    return out


def _diff_text(r: dict[str, Any]) -> str:
    o, n = r["old"], r["new"]
    lines = [f"ep4 diff {o['name']} {o['version']} -> {n['name']} {n['version']} over {r['source']}"]
    if r["settings"]:
        lines.append(f"{len(r['settings'])} setting(s) changed (review each: a corpus shows only what they change in Rules 1-4)")
        lines += [f"  {c['path']}: {c['old']} -> {c['new']}" for c in r["settings"]]
    lines.append(f"{len(r['changed'])} of {r['total']} change outcome")
    for gate, count in r["by_gate"].items():
        lines.append(f"  {gate}: {count}")
        for c in [c for c in r["changed"] if c["gate"] == gate][:50]:
            lines.append(f"    {c['case']}: {_fmt_outcome(c['old'])} -> {_fmt_outcome(c['new'])}")
            if "order" in c["fields"]:
                lines.append(f"      order: {_order_change(c['old'].get('order'), c['new'].get('order'))}")
            for g, values in c["read"].items():
                if values:
                    lines.append(f"      {g} read " + ", ".join(f"{k} = {v}" for k, v in values.items()))
    for gate, count in r["shadow_would_block"].items():
        lines.append(f"shadow gate {gate} would have refused {count} of the {r['went_through']} that went through: "
                     + ", ".join(r["shadow_examples"][gate]) + (" ..." if count > 5 else ""))
    return "\n".join(lines) + "\n"


def _diff_markdown(r: dict[str, Any]) -> str:
    o, n = r["old"], r["new"]
    out = [f"### ep4 diff: {o['name']} {o['version']} → {n['version']}", ""]
    if r["settings"]:
        out += [f"**{len(r['settings'])} setting(s) changed** (review each: a corpus shows only what they change in Rules 1-4):", "",
                "| setting | old | new |", "|---|---|---|"]
        out += [f"| `{_md_cell(c['path'])}` | {_md_cell(c['old'])} | {_md_cell(c['new'])} |" for c in r["settings"]] + [""]
    out += [f"Over {r['source']}: **{len(r['changed'])} of {r['total']}** change outcome.", ""]
    if r["by_gate"]:
        out += ["| gate | changed |", "|---|---|"] + [f"| `{g}` | {c} |" for g, c in r["by_gate"].items()] + [""]
        out += ["| case | old | new |", "|---|---|---|"]
        out += [f"| `{_md_cell(c['case'])}` | {_md_cell(_fmt_outcome(c['old']))} | {_md_cell(_fmt_outcome(c['new']))} |" for c in r["changed"]]
        out.append("")
    for gate, count in r["shadow_would_block"].items():
        out.append(f"* shadow gate `{gate}` would have refused {count} of the {r['went_through']} that went through")
    return "\n".join(out) + "\n"


def _diff_json(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=1, ensure_ascii=False) + "\n"
