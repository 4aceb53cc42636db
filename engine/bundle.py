"""Policy bundles and gate libraries (YAML), loaded, validated and compiled at load time.

Shape follows Kubernetes ValidatingAdmissionPolicy: ``apiVersion`` / ``kind`` / ``metadata`` and a
``spec`` whose typed ``params`` live apart from the rules. Every problem is reported as
``file:line:col: message`` with the offending text; nothing is compiled lazily, so a bundle that
loads can be evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .activation import variables_for
from .cel import CelCompileError, CompiledExpression, FieldSpec, compile_expression
from .cel.check import merge_fields, sorted_fields
from .errors import BundleError, Problem
from .models import GateOutcome, ShadowGateOutcome
from .numbers import DecimalParseError, parse_decimal, sha256_digest
from .reason_codes import ENGINE_CODES
from .state import arms_cooldown as _arms_cooldown

if TYPE_CHECKING:  # the YAML reader is imported when a bundle is read from its files (engine.bundle_yaml)
    from ruamel.yaml.comments import CommentedMap

    from .bundle_document import BundleSpec, GateSpec, ParamSpec
    from .bundle_yaml import _Source

__all__ = [
    "API_VERSION",
    "Bundle",
    "BundleDocument",
    "BundleError",
    "Gate",
    "GateLibraryDocument",
    "Problem",
    "load_bundle",
]

API_VERSION = "ep4.io/v1"
# the document models a bundle file is read with, defined in engine.bundle_document and imported from there
# on first use: a command on a bundle from the compiled-bundle cache never builds them (issue 6)
_DOCUMENT_MODELS = frozenset({"Metadata", "ParamType", "ParamSpec", "SpecGate", "GateSpec", "PostFailure", "StateSettings",
                              "Waiver", "BundleSpec", "BundleDocument", "GateLibraryDocument"})


def __getattr__(name: str) -> Any:
    if name in _DOCUMENT_MODELS:
        from . import bundle_document

        return getattr(bundle_document, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


RULE3_CATEGORIES = ("exposure", "temporal", "frequency", "health")
RULE4_CATEGORY = "exchange-constraint"


# --- document schema: what every loaded bundle holds (the rest of the schema, used only when a bundle is
# read from its files or exported by `ep4 schema bundle`, is engine.bundle_document) ---


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Spec §5 "Risk Gates (Hard, Non-Negotiable)": what a bundle's riskGates must cover, or waive by name
# with a reason. Trading session windows are optional in §5.2, so they are not required.
SPEC_GATES = {
    "5.1.max-abs-position": "max absolute position size",
    "5.1.max-notional": "max notional exposure",
    "5.1.max-leverage": "max leverage per symbol",
    "5.1.max-open-positions": "max concurrent open positions",
    "5.2.min-interval": "minimum time between executions",
    "5.2.cooldown-after-failed-safe": "cooldown after FAILED_SAFE",
    "5.2.session-windows": "trading session windows (optional)",
    "5.3.max-actions-per-minute": "max actions per minute",
    "5.3.max-opens-per-symbol": "max opens per symbol",
    "5.3.max-cancels-per-window": "max cancels per window",
    "5.4.api-latency": "API latency threshold",
    "5.4.order-rejection-rate": "order rejection rate threshold",
    "5.4.margin-available": "margin availability check",
}
REQUIRED_SPEC_GATES = tuple(k for k in SPEC_GATES if k != "5.2.session-windows")


class ExchangeClientSettings(_Doc):
    recvWindowMs: int = Field(default=5000, ge=1, le=60000)
    connectTimeoutMs: int = Field(default=2000, ge=1, le=60000)
    readTimeoutMs: int = Field(default=5000, ge=1, le=60000)
    ackTimestampToleranceMs: int = Field(default=5000, ge=0, le=600000)

    @model_validator(mode="after")
    def _tolerance_covers_the_window(self) -> "ExchangeClientSettings":
        # Binance runs a request up to recvWindowMs after its timestamp (facts file §1.2), so a genuine
        # ack's updateTime may be that late: a smaller tolerance would call it inconsistent (Rule 6), put
        # a good order in doubt and cancel it (§6.3)
        if self.ackTimestampToleranceMs < self.recvWindowMs:
            raise ValueError(
                f"ackTimestampToleranceMs {self.ackTimestampToleranceMs} is below recvWindowMs {self.recvWindowMs}: Binance may run "
                "a request that late, so a genuine acknowledgement would be taken for an inconsistent one")
        return self


# --- loaded form ---


@dataclass(frozen=True)
class Gate:
    id: str
    category: str
    rule: int
    expression: CompiledExpression
    reason_code: str
    message: str
    source: str  # file:line:col of the expression
    implements: str | None = None  # the spec §5 gate it enforces
    enforcement: str = "enforce"  # "warn" / "audit": a shadow gate, recorded but never deciding

    @property
    def shadow(self) -> bool:
        return self.enforcement != "enforce"

    def __getstate__(self) -> dict[str, Any]:
        return _fields_only(self)

    @cached_property
    def passed(self) -> GateOutcome:
        """The trace entry of a pass: the same immutable object every time."""
        if self.shadow:
            return ShadowGateOutcome(id=self.id, rule=self.rule, category=self.category, passed=True, error=None, enforcement=self.enforcement)
        return GateOutcome(id=self.id, rule=self.rule, category=self.category, passed=True, error=None)

    @cached_property
    def refused(self) -> GateOutcome:
        """The trace entry of a refusal (false, no error): the same immutable object every time."""
        if self.shadow:
            return ShadowGateOutcome(id=self.id, rule=self.rule, category=self.category, passed=False, error=None, enforcement=self.enforcement)
        return GateOutcome(id=self.id, rule=self.rule, category=self.category, passed=False, error=None)


@dataclass(frozen=True)
class Bundle:
    name: str
    version: str
    execution_mode: str
    params: dict[str, tuple[str, Any]]  # name -> (type, typed value)
    cooldown_ms: int
    force_cancel_open_orders: bool
    cooldown_armed_by: frozenset[int]
    lookback_ms: int
    exchange_client: ExchangeClientSettings
    risk_gates: tuple[Gate, ...]
    constraint_checks: tuple[Gate, ...]
    digest: str
    path: str = ""
    canonical: dict[str, Any] = field(default_factory=dict, repr=False)
    waivers: tuple[tuple[str, str], ...] = ()  # (spec §5 gate, reason): named in every result
    # (file as named by the bundle, "sha256:" of its bytes) for the bundle file and each include, in
    # order: what a certificate signs (a comment is a change a reviewer signs off too; the canonical
    # ``digest`` ignores it)
    sources: tuple[tuple[str, str], ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (engine.bundle_cache) as its fields: derived values (cached properties, memo) are
        rebuilt on first use."""
        return _fields_only(self)

    @cached_property
    def roots(self) -> frozenset[str]:
        """The gate variables this bundle's gates read (the only ones built per decision)."""
        return frozenset().union(*(g.expression.roots for g in self.risk_gates + self.constraint_checks))

    @cached_property
    def reads(self) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
        """Per root its gates read (:attr:`roots`): the fields they read off it as ``root.field``, or
        None when a gate uses the root any other way (engine.cel.check.root_fields). The activation
        builds only these fields of the context's objects."""
        merged: dict[str, set[str] | None] = {}
        for g in self.risk_gates + self.constraint_checks:
            known = dict(g.expression.fields) if g.expression.fields is not None else {}
            for root in g.expression.roots:
                merge_fields(merged, root, known.get(root))
        return sorted_fields(merged)

    def params_for(self, symbol: str | None) -> dict[str, Any]:
        """Typed params as gates see them, per-symbol values resolved for ``symbol``."""
        out: dict[str, Any] = {}
        for name, (kind, value) in self.params.items():
            if kind == "per_symbol_decimal":
                if symbol is not None and symbol in value:
                    out[name] = value[symbol]
                elif "*" in value:
                    out[name] = value["*"]
                # else: absent -> any gate reading it fails safe with a clear message
            elif kind == "session_windows":
                out[name] = [{"start": s, "end": e} for s, e in value]
            else:
                out[name] = value
        return out

    def settings(self) -> dict[str, Any]:
        return {"cooldown_ms": self.cooldown_ms, "lookback_ms": self.lookback_ms, "execution_mode": self.execution_mode}

    def arms_cooldown(self, result: str, rule: int | None, timestamp: int, state: Any, reason_code: str = "") -> bool:
        """Whether this outcome starts the spec §6.3 cooldown (engine.state.arms_cooldown)."""
        return _arms_cooldown(result, rule, timestamp, state, self.cooldown_ms, self.cooldown_armed_by, reason_code)

    @cached_property
    def risk_chain(self) -> Any:
        """Rule 3's gates as one generated fast-path function (engine.gate_chain)."""
        from .gate_chain import gate_chain

        return gate_chain(self.risk_gates)

    @cached_property
    def constraint_chain(self) -> Any:
        """Rule 4's checks as one generated fast-path function (engine.gate_chain)."""
        from .gate_chain import gate_chain

        return gate_chain(self.constraint_checks)

    @cached_property
    def rules_chain(self) -> Any:
        """Rules 3 and 4's gates, in order, as one generated fast-path function (engine.gate_chain): the
        pipeline's first try, which answers only "every gate of both rules passes on its fast path"."""
        from .gate_chain import gate_chain

        return gate_chain(self.risk_gates + self.constraint_checks)

    @cached_property
    def has_shadow_gates(self) -> bool:
        return any(g.shadow for g in self.risk_gates + self.constraint_checks)

    def gate(self, gate_id: str) -> Gate | None:
        return next((g for g in self.risk_gates + self.constraint_checks if g.id == gate_id), None)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "digest": self.digest}
        if self.waivers:  # a bundle without one of the spec's non-negotiable gates says so in every result
            out["waivers"] = [f"{gate}: {reason}" for gate, reason in self.waivers]
        return out


def _fields_only(obj: Any) -> dict[str, Any]:
    names = {f.name for f in fields(obj)}
    return {k: v for k, v in obj.__dict__.items() if k in names}


MAX_FILE_BYTES = 1 << 20  # a bundle or gate library is a page of YAML; 1 MiB is generous


# --- parameters ---

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _typed_param(name: str, spec: ParamSpec) -> tuple[Any, FieldSpec]:
    kind, value = spec.type, spec.value
    if kind == "decimal":
        return parse_decimal(value), FieldSpec("decimal", spec.description)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
        return value, FieldSpec("decimal", spec.description)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value, FieldSpec("bool", spec.description)
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value, FieldSpec("string", spec.description)
    if kind == "per_symbol_decimal":
        if not isinstance(value, dict) or not value:
            raise ValueError("expected a mapping of SYMBOL (or '*' for the default) to a decimal")
        out: dict[str, Decimal] = {}
        for sym, v in value.items():
            if sym != "*" and not re.fullmatch(r"^[A-Z0-9]{2,32}$", sym):
                raise ValueError(f"'{sym}' is not a symbol (or '*')")
            out[sym] = parse_decimal(v)
        return out, FieldSpec("decimal", spec.description)
    if kind == "session_windows":
        if not isinstance(value, list):
            raise ValueError("expected a list of {start: 'HH:MM', end: 'HH:MM'} (UTC)")
        windows = []
        for w in value:
            if not isinstance(w, dict) or set(w) != {"start", "end"}:
                raise ValueError("each window needs exactly 'start' and 'end'")
            mins = []
            for k in ("start", "end"):
                m = _TIME.fullmatch(str(w[k]))  # whole: "$" alone takes "09:00\n"
                if not m:
                    raise ValueError(f"window {k} {w[k]!r} is not HH:MM (UTC)")
                mins.append(int(m.group(1)) * 60 + int(m.group(2)))
            if mins[0] == mins[1]:
                raise ValueError("a window with start == end is empty")
            windows.append(tuple(mins))
        return windows, FieldSpec("list", spec.description, max_items=len(windows))
    raise ValueError(f"unknown parameter type {kind}")  # pragma: no cover - Literal guards it


# --- loading ---


def load_bundle(path: str | Path) -> Bundle:
    """Load, validate and compile a bundle and its gate libraries; raise BundleError on any problem."""
    from .bundle_document import BundleDocument, GateLibraryDocument  # the document models, only when YAML is read
    from .bundle_yaml import _lc, _Source, _validate  # ruamel.yaml too

    bundle_path = Path(path)
    src = _Source(bundle_path)
    doc, problems = _validate(BundleDocument, src)
    if doc is None:
        raise BundleError(problems)
    spec: BundleSpec = doc.spec

    params: dict[str, tuple[str, Any]] = {}
    param_specs: dict[str, FieldSpec] = {}
    for name, p in spec.params.items():
        try:
            value, fs = _typed_param(name, p)
        except (ValueError, DecimalParseError) as exc:
            line, col = src.position(("spec", "params", name, "value"))
            problems.append(Problem(src.name, line, col, f"spec.params.{name}.value: {exc}", src.line_text(line)))
            continue
        if not re.fullmatch(r"^[a-z][a-z0-9_]*$", name):
            line, col = src.position(("spec", "params", name))
            problems.append(Problem(src.name, line, col, f"parameter name '{name}' must be snake_case", src.line_text(line)))
        params[name] = (p.type, value)
        param_specs[name] = fs
    variables = variables_for(param_specs)

    # gather gate definitions: (spec, source, mapping node holding the expression)
    defined: dict[str, tuple[GateSpec, _Source, CommentedMap, tuple[int, int]]] = {}

    def add_gates(gates: list[GateSpec], source: _Source, base: tuple[Any, ...]) -> None:
        seq = source.root
        for part in base:
            seq = seq[part]
        for i, g in enumerate(gates):
            node = seq[i]
            pos = _lc(node.lc.key("id")) if "id" in node else _lc(seq.lc.item(i))
            if g.id in defined:
                other = defined[g.id]
                problems.append(
                    Problem(
                        source.name, pos[0], pos[1],
                        f"duplicate gate id '{g.id}' (first defined at {other[1].name}:{other[3][0]}:{other[3][1]})",
                        source.line_text(pos[0]),
                    )
                )
                continue
            defined[g.id] = (g, source, node, pos)

    include_root = (bundle_path.parent / spec.includeRoot).resolve()
    sources = [(bundle_path.name, src.sha256)]
    for i, inc in enumerate(spec.include):
        lib_path = (bundle_path.parent / inc).resolve()
        if not lib_path.is_relative_to(include_root):
            line, col = src.position(("spec", "include", i))
            problems.append(Problem(
                src.name, line, col,
                f"include '{inc}' is outside {include_root}; includes stay under spec.includeRoot (default: the bundle's directory)",
                src.line_text(line),
            ))
            continue
        try:
            lib_src = _Source(lib_path)
        except BundleError as exc:
            line, col = src.position(("spec", "include", i))
            problems.append(Problem(src.name, line, col, f"include '{inc}': {exc.problems[0].message}", src.line_text(line)))
            continue
        sources.append((inc, lib_src.sha256))
        lib, lib_problems = _validate(GateLibraryDocument, lib_src)
        problems.extend(lib_problems)
        if lib is not None:
            add_gates(lib.gates, lib_src, ("gates",))
    if spec.gates:
        add_gates(spec.gates, src, ("spec", "gates"))

    compiled: dict[str, Gate] = {}
    for gid, (g, gsrc, node, pos) in defined.items():
        if g.reason_code in ENGINE_CODES:
            line, col = _lc(node.lc.value("reason_code"))
            problems.append(
                Problem(gsrc.name, line, col, f"gate '{gid}': reason_code {g.reason_code} is reserved by the engine", gsrc.line_text(line))
            )
        if not gid.startswith(g.category.split("-")[0] + "."):
            problems.append(
                Problem(gsrc.name, pos[0], pos[1], f"gate id '{gid}' must start with its category '{g.category}.'", gsrc.line_text(pos[0]))
            )
        line0, col0, block = gsrc.value_origin(node, "expression")
        try:
            expr = compile_expression(g.expression, variables)
        except CelCompileError as exc:
            line = line0 + exc.line - 1
            col = (col0 if (exc.line == 1 or block) else 1) + exc.column - 1
            problems.append(Problem(gsrc.name, line, col, f"gate '{gid}': {exc.message}", gsrc.line_text(line)))
            continue
        rule = 4 if g.category == RULE4_CATEGORY else 3
        compiled[gid] = Gate(gid, g.category, rule, expr, g.reason_code, g.message, f"{gsrc.name}:{line0}:{col0}", g.implements, g.enforcement)
        for kind, what, wline, wcol in expr.windows:
            window = _window_ms(kind, what, params)
            if window is not None and window > spec.state.lookbackMs:
                line = line0 + wline - 1
                col = (col0 if (wline == 1 or block) else 1) + wcol - 1
                named = f"params.{what} = {window}" if kind == "param" else str(window)
                problems.append(Problem(
                    gsrc.name, line, col,
                    f"gate '{gid}': recent_count window {named} ms is longer than state.lookbackMs ({spec.state.lookbackMs} ms): "
                    "the state view would not hold the records it must count; raise lookbackMs or shorten the window",
                    gsrc.line_text(line),
                ))

    def select(key: str, rule: int) -> tuple[Gate, ...]:
        chosen, seen = [], set()
        for i, gid in enumerate(getattr(spec, key)):
            line, col = src.position(("spec", key, i))
            if gid in seen:
                problems.append(Problem(src.name, line, col, f"spec.{key}: gate '{gid}' listed twice", src.line_text(line)))
                continue
            seen.add(gid)
            if gid not in defined:
                problems.append(Problem(src.name, line, col, f"spec.{key}: no gate '{gid}' is defined or included", src.line_text(line)))
                continue
            if gid not in compiled:
                continue  # its own problem is already reported
            gate = compiled[gid]
            if gate.rule != rule:
                want = "one of " + ", ".join(RULE3_CATEGORIES) if rule == 3 else RULE4_CATEGORY
                problems.append(
                    Problem(src.name, line, col, f"spec.{key}: '{gid}' has category {gate.category}; Rule {rule} needs {want}", src.line_text(line))
                )
                continue
            chosen.append(gate)
        return tuple(chosen)

    risk = select("riskGates", 3)
    checks = select("constraintChecks", 4)
    problems.extend(_non_negotiable(spec, risk, src, problems))
    if problems:
        raise BundleError(problems)

    canonical = {
        "apiVersion": doc.apiVersion,
        "kind": doc.kind,
        "metadata": doc.metadata.model_dump(),
        "spec": {
            "exchange": spec.exchange,
            "executionMode": spec.executionMode,
            "params": {k: {"type": t, "value": v} for k, (t, v) in sorted(params.items())},
            "postFailure": spec.postFailure.model_dump(exclude_defaults=True),  # a new default leaves digests as they were
            "state": spec.state.model_dump(),
            "exchangeClient": spec.exchangeClient.model_dump(),
            "riskGates": [_gate_canonical(g) for g in risk],
            "constraintChecks": [_gate_canonical(g) for g in checks],
            **({"waivers": [w.model_dump() for w in spec.waivers]} if spec.waivers else {}),
        },
    }
    return Bundle(
        name=doc.metadata.name,
        version=doc.metadata.version,
        execution_mode=spec.executionMode,
        params=params,
        cooldown_ms=spec.postFailure.cooldownMs,
        force_cancel_open_orders=spec.postFailure.forceCancelOpenOrders,
        cooldown_armed_by=frozenset(spec.postFailure.cooldownArmedBy),
        lookback_ms=spec.state.lookbackMs,
        exchange_client=spec.exchangeClient,
        risk_gates=risk,
        constraint_checks=checks,
        digest=sha256_digest(canonical),
        path=str(bundle_path),
        canonical=canonical,
        waivers=tuple((w.implements, w.reason) for w in spec.waivers),
        sources=tuple(sources),
    )


def _gate_canonical(g: Gate) -> dict[str, str]:
    out = {
        "id": g.id,
        "category": g.category,
        "expression": g.expression.text,
        "reason_code": g.reason_code,
        "message": g.message,
    }
    if g.implements:
        out["implements"] = g.implements
    if g.shadow:  # absent for enforced gates, so their bundles' digests are what they were
        out["enforcement"] = g.enforcement
    return out


def _window_ms(kind: str, what: str, params: dict[str, tuple[str, Any]]) -> Decimal | None:
    """A recent_count window in ms: a literal, or a parameter (its largest per-symbol value)."""
    if kind == "literal":
        try:
            return Decimal(int(what, 16)) if what.lower().lstrip("-").startswith("0x") else Decimal(what)
        except (ArithmeticError, ValueError):
            return None
    if what not in params:
        return None  # reported elsewhere: the gate reads an undeclared parameter
    kind_, value = params[what]
    if kind_ == "per_symbol_decimal":
        return max(value.values())
    return Decimal(value) if kind_ in ("decimal", "integer") else None


def _non_negotiable(spec: BundleSpec, risk: tuple[Gate, ...], src: "_Source", problems: list[Problem]) -> list[Problem]:
    """Spec §5 calls the risk gates hard and non-negotiable: every one must be in riskGates (a gate
    that ``implements`` it) or waived by name with a reason; and the cooldown of §6.3 cannot be 0
    unless its gate is waived. (Skipped while other problems stand: the gate list may be incomplete.)"""
    if problems:
        return []
    covered = {g.implements for g in risk if g.implements and not g.shadow}  # a shadow gate enforces nothing
    waived = {w.implements for w in spec.waivers}
    out = []
    line, col = src.position(("spec", "riskGates"))
    for name in REQUIRED_SPEC_GATES:
        if name not in covered and name not in waived:
            out.append(Problem(
                src.name, line, col,
                f"spec.riskGates: no gate implements spec §5 '{name}' ({SPEC_GATES[name]}); add one, or waive it "
                f"explicitly: spec.waivers: [{{implements: {name}, reason: ...}}]",
                src.line_text(line),
            ))
    for i, w in enumerate(spec.waivers):
        if w.implements in covered:
            wl, wc = src.position(("spec", "waivers", i))
            out.append(Problem(src.name, wl, wc, f"spec.waivers: '{w.implements}' is waived but a risk gate implements it", src.line_text(wl)))
    if spec.postFailure.cooldownMs == 0 and "5.2.cooldown-after-failed-safe" not in waived:
        pl, pc = src.position(("spec", "postFailure", "cooldownMs"))
        out.append(Problem(
            src.name, pl, pc,
            "spec.postFailure.cooldownMs: 0 disables the spec §6.3 enforced cooldown; give it a duration, or waive "
            "'5.2.cooldown-after-failed-safe' with a reason",
            src.line_text(pl),
        ))
    return out
