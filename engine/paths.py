"""Where the shipped policies, gate libraries and examples live (repo checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_root() -> Path:
    bundled = _HERE / "_bundled"
    return bundled if bundled.is_dir() else _HERE.parent


def default_bundle_path() -> Path:
    return data_root() / "policies" / "binance-perp-default.yaml"


def default_approvers_path() -> Path:
    """The approvers file shipped with this ep4 installation (the maintainers' key)."""
    return data_root() / "policies" / "approvers.json"


def default_exchange_info_path() -> Path:
    return data_root() / "policies" / "samples" / "binance-usdm-exchangeInfo.json"


def default_leverage_brackets_path() -> Path:
    return data_root() / "policies" / "samples" / "binance-usdm-leverageBracket.json"


def examples_dir() -> Path:
    return data_root() / "examples"

