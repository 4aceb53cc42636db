"""ep4: the EP-4 Execution Policy Layer (spec v1.0) for Binance USDⓈ-M perpetual futures.

For hosts embedding the engine:

    from engine import Config, evaluate, load_bundle, build_constraints, ExecutionContext
    config = Config(load_bundle("policies/binance-perp-default.yaml"), build_constraints(info, brackets), "dry-run")
    result = evaluate(decision_json_text, ExecutionContext.model_validate(context), config).result

``evaluate`` is the pure core (Rules 1-4); :class:`Executor` adds Rules 5-6 with the ledger, the
audit log and an exchange client (``exchange.BinanceClient``).
"""

import importlib
from typing import Any

# Public names and the module each lives in; loaded on first use (PEP 562), so a process that only
# needs part of ep4 (`ep4 --help`, the paper exchange) does not import the whole engine.
_EXPORTS = {
    "AuditLog": "audit", "verify_log": "audit",
    "Bundle": "bundle", "BundleError": "errors", "load_bundle": "bundle",
    "ConstraintsSnapshot": "constraints", "build_constraints": "constraints",
    "Executor": "executor",
    "Ledger": "ledger",
    "ExecutionContext": "models", "ExecutionResult": "models", "PolicyDecision": "models", "StateView": "models",
    "Config": "pipeline", "Evaluation": "pipeline", "evaluate": "pipeline",
    "replay_log": "replay",
    "ExchangeReplyData": "verification", "verify_ack": "verification",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engine.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AuditLog",
    "Bundle",
    "BundleError",
    "Config",
    "ConstraintsSnapshot",
    "Evaluation",
    "ExchangeReplyData",
    "ExecutionContext",
    "ExecutionResult",
    "Executor",
    "Ledger",
    "PolicyDecision",
    "StateView",
    "build_constraints",
    "evaluate",
    "load_bundle",
    "replay_log",
    "verify_ack",
    "verify_log",
]
