"""ep4: the EP-4 Execution Policy Layer (spec v1.0) for Binance USDⓈ-M perpetual futures.

For hosts embedding the engine:

    from engine import Config, evaluate, load_bundle, build_constraints, ExecutionContext
    config = Config(load_bundle("policies/binance-perp-default.yaml"), build_constraints(info, brackets), "dry-run")
    result = evaluate(decision_json_text, ExecutionContext.model_validate(context), config).result

``evaluate`` is the pure core (Rules 1-4); :class:`Executor` adds Rules 5-6 with the ledger, the
audit log and an exchange client (``exchange.BinanceClient``).
"""

from .audit import AuditLog, verify_log
from .bundle import Bundle, BundleError, load_bundle
from .constraints import ConstraintsSnapshot, build_constraints
from .executor import Executor
from .ledger import Ledger
from .models import ExecutionContext, ExecutionResult, PolicyDecision, StateView
from .pipeline import Config, Evaluation, evaluate
from .replay import replay_log
from .verification import ExchangeReplyData, verify_ack

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
