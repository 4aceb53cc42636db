"""The bundle and gate-library documents as read from YAML (spec §9 bundles), and their JSON Schema
(`ep4 schema bundle`, `ep4 schema gate-library`).

Kept apart from :mod:`engine.bundle` so that a command on a bundle from the compiled-bundle cache
(engine.bundle_cache) does not build these models: only a bundle read from its files does (issue 6,
"import what a command needs when it needs it"). ``engine.bundle.BundleDocument`` and the others still
name them (imported on first use).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .bundle import SPEC_GATES, ExchangeClientSettings, _Doc

__all__ = ["BundleDocument", "BundleSpec", "GateLibraryDocument", "GateSpec", "Metadata", "ParamSpec", "PostFailure",
           "StateSettings", "Waiver"]


class Metadata(_Doc):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", description="semantic version")
    description: str = ""


ParamType = Literal["decimal", "integer", "bool", "string", "per_symbol_decimal", "session_windows"]


class ParamSpec(_Doc):
    type: ParamType
    value: Any
    description: str = ""
    unit: str = ""


SpecGate = Literal[tuple(SPEC_GATES)]  # type: ignore[valid-type]


class GateSpec(_Doc):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$", description="category.name")
    category: Literal["exposure", "temporal", "frequency", "health", "exchange-constraint"]
    implements: SpecGate | None = Field(default=None, description="the spec §5 gate this gate enforces (a bundle must cover every one)")
    enforcement: Literal["enforce", "warn", "audit"] = Field(
        default="enforce",
        description="enforce: a failure decides the outcome; warn / audit (a shadow gate): evaluated and recorded in the "
        "gate trace and the audit log, never changes the outcome (warn is also printed by the CLI)",
    )
    expression: str = Field(min_length=1, description="CEL; true = pass")
    reason_code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{2,63}$")
    message: str = Field(min_length=1)


class PostFailure(_Doc):
    cooldownMs: int = Field(ge=0, description="spec §6.3 enforced cooldown after FAILED_SAFE")
    forceCancelOpenOrders: bool = Field(description="spec §6.3 optional forced ACTION_CANCEL_OPEN_ORDERS")
    cooldownArmedBy: list[Literal[3, 4, 5, 6]] = Field(
        default=[3, 4, 5, 6], min_length=1,
        description="the spec §4 rules whose FAILED_SAFE starts the cooldown (default: all, as spec §6.3 reads); "
        "a FAILED_SAFE during a running cooldown never extends it",
    )


class StateSettings(_Doc):
    lookbackMs: int = Field(gt=0, description="how much execution history the state view carries")


class Waiver(_Doc):
    implements: SpecGate = Field(description="the spec §5 gate this bundle does without")
    reason: str = Field(min_length=10, description="why; named in every result the bundle produces")


class BundleSpec(_Doc):
    exchange: Literal["BINANCE_PERP"]
    executionMode: Literal["dry-run", "paper", "binance-testnet", "binance"]
    params: dict[str, ParamSpec] = {}
    postFailure: PostFailure
    state: StateSettings
    exchangeClient: ExchangeClientSettings = ExchangeClientSettings()
    include: list[str] = Field(default=[], description="gate library files, relative to this bundle")
    includeRoot: str = Field(
        default=".", description="includes must lie under this directory (relative to the bundle, or absolute); default: the bundle's own"
    )
    gates: list[GateSpec] = Field(default=[], description="gates defined inline")
    riskGates: list[str] = Field(description="Rule 3 gate ids, in evaluation order")
    waivers: list[Waiver] = Field(default=[], description="spec §5 gates deliberately left out, each with a reason")
    constraintChecks: list[str] = Field(description="Rule 4 check ids, in evaluation order")


class BundleDocument(_Doc):
    apiVersion: Literal["ep4.io/v1"]
    kind: Literal["PolicyBundle"]
    metadata: Metadata
    spec: BundleSpec


class GateLibraryDocument(_Doc):
    apiVersion: Literal["ep4.io/v1"]
    kind: Literal["GateLibrary"]
    metadata: Metadata
    gates: list[GateSpec]
