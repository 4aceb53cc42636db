"""Where the shipped policies, gate libraries and examples live (repo checkout or installed wheel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def data_root() -> Path:
    bundled = _HERE / "_bundled"
    return bundled if bundled.is_dir() else _HERE.parent


def default_bundle_path() -> Path:
    return data_root() / "policies" / "binance-perp-default.yaml"


def default_exchange_info_path() -> Path:
    return data_root() / "policies" / "samples" / "binance-usdm-exchangeInfo.json"


def default_leverage_brackets_path() -> Path:
    return data_root() / "policies" / "samples" / "binance-usdm-leverageBracket.json"


def examples_dir() -> Path:
    return data_root() / "examples"


def paper_sample(path: Path) -> Any:
    """A shipped Binance sample as plain JSON for the paper exchange, which stores it verbatim
    in its own state file (the engine itself reads samples with engine.numbers.loads)."""
    return json.loads(path.read_text(encoding="utf-8"))
