"""Reading the CLI's input files into validated models, with precise, user-facing errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any, Iterator

from pydantic import ValidationError

from ..bundle import Bundle
from ..errors import InputError
from ..constraints import ConstraintsError, ConstraintsSnapshot, build_constraints, with_leverage_brackets
from ..models import ExecutionContext
from ..numbers import TEXT_NUMBERS_DECODER as _TEXT_NUMBERS
from ..numbers import DecimalParseError, duplicate_keys, loads, repeats_seen
from ..paths import default_bundle_path, default_exchange_info_path, default_leverage_brackets_path

__all__ = ["InputError", "load_config_bundle", "load_constraints", "load_context", "open_shipped_paper", "paper_sample", "read_decisions", "read_json"]


def read_json(path: str | Path, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from None
    before = repeats_seen()
    try:
        data = loads(text)
    except (ValueError, DecimalParseError) as exc:
        raise InputError(f"{what} file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{what} file {path} is nested too deeply to be read") from None
    if repeats_seen() != before:  # which of two values was meant is not ep4's to guess (json keeps the last)
        repeated = duplicate_keys(data)
        raise InputError(f"{what} file {path}: a key appears more than once, so it is ambiguous: {', '.join(repeated[:5])}"
                         + (f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else ""))
    return data


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def load_context(path: str | Path) -> ExecutionContext:
    data = read_json(path, "context")
    try:
        return ExecutionContext.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"context {path} is not a valid ExecutionContext: {_pydantic_message(exc)}") from None


def load_config_bundle(path: str | Path | None) -> Bundle:
    """The bundle a command runs with, from the per-user compiled-bundle cache when its files and
    ep4 are unchanged (engine.bundle_cache); `ep4 check` always loads from the files."""
    from ..bundle_cache import load_bundle_cached

    return load_bundle_cached(path or default_bundle_path())


def load_constraints(exchange_info: str | Path | None, brackets: str | Path | None) -> ConstraintsSnapshot:
    info_path = exchange_info or default_exchange_info_path()
    bracket_path = brackets or (default_leverage_brackets_path() if exchange_info is None else None)
    info = read_json(info_path, "exchangeInfo (--constraints)")
    raw_brackets = read_json(bracket_path, "leverageBracket (--leverage-brackets)") if bracket_path else None
    try:
        snap = build_constraints(info)
    except ConstraintsError as exc:
        raise InputError(f"{info_path}: {exc}") from None
    if raw_brackets is None:
        return snap
    try:
        return with_leverage_brackets(snap, raw_brackets)
    except ConstraintsError as exc:
        raise InputError(f"{bracket_path}: {exc}") from None


def read_decisions(source: str) -> Iterator[str]:
    """Decisions from a .json file (one object or an array), a .jsonl file (one per line, streamed)
    or ``-`` (stdin: JSON Lines, streamed, or one JSON document). Lines are kept as text so a broken
    line becomes a REJECTED result of its own instead of stopping the run; a file is read as it is
    processed, so memory stays flat however many lines it has."""
    if source == "-":
        stream: IO[str] = sys.stdin
        try:  # a line with bytes that are not UTF-8 becomes one REJECTED result, not the end of the run
            sys.stdin.reconfigure(errors="surrogateescape", newline="\n")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
        jsonl: bool | None = None
    else:
        path = Path(source)
        try:
            # undecodable bytes become lone surrogates, which the JSON reader refuses for that line only
            # newline="\n": lines end at \n only (newline="" also ended one at a lone \r, inside a decision)
            stream = path.open("r", encoding="utf-8", errors="surrogateescape", newline="\n")
        except FileNotFoundError:
            raise InputError(f"decisions file not found: {source}") from None
        except OSError as exc:
            raise InputError(f"cannot read decisions file {source}: {exc}") from None
        jsonl = path.suffix.lower() == ".jsonl"
    where = source if source != "-" else "standard input"
    try:
        yield from _decisions(stream, jsonl, where)
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read decisions from {where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _lines(stream: IO[str]) -> Iterator[str]:
    """Lines split on \n only (a U+2028 inside a JSON string is not a line break)."""
    for line in stream:
        yield line.rstrip("\r\n")


def _decisions(stream: IO[str], jsonl: bool | None, where: str) -> Iterator[str]:
    lines = _lines(stream)
    if jsonl is False:  # a .json file: one document, or an array of them
        text = "\n".join(lines)
        yield from _document(text, where, broken_is_one_result=True)
        return
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise InputError(f"no decisions in {where}")
    if jsonl is None:  # stdin: JSON Lines if the first line is a whole JSON value, else one document
        try:
            loads(first)
        except (ValueError, DecimalParseError, RecursionError):
            # a first line opening an array is one document: broken (truncated), it is one broken result,
            # never its lines one by one (a whole decision on a line of a cut array would be executed)
            array = first.lstrip().startswith("[")
            yield from _document("\n".join([first, *lines]), where, broken_is_one_result=array)
            return
        if first.lstrip().startswith("["):
            yield from _document("\n".join([first, *lines]), where, broken_is_one_result=False)
            return
    yield first
    for line in lines:
        if line.strip():
            yield line


def _document(text: str, where: str, *, broken_is_one_result: bool) -> Iterator[str]:
    """The decisions of one JSON document, each as **its own text** (spec §4 Rules 1-2 read exactly
    what was authorized): the document itself, or each element of a top-level array as it is written
    there. Never parsed and written again: that would drop a repeated key (two decision_codes, two
    quantities: the last would win), turn a number id into text, or take a JSON string holding a
    decision for the decision itself."""
    if not text.strip():
        raise InputError(f"no decisions in {where}")
    items = _array_items(text)
    if items is None:  # not JSON at all
        if broken_is_one_result:
            yield text  # one broken document: one INPUT_NOT_JSON result
        else:
            yield from (line for line in text.split("\n") if line.strip())
        return
    if items is False:  # one document, not an array: evaluated as it is written
        yield text
        return
    if not items:
        raise InputError(f"no decisions in {where} (an empty array)")
    yield from items


_WHITESPACE = json.decoder.WHITESPACE.match


def _array_items(text: str) -> list[str] | bool | None:
    """The texts of a top-level JSON array's elements, each exactly as written; False for a JSON
    document that is not an array, None for text that is not JSON. Numbers are read as text here
    (any JSON number; each element is read exactly, with ep4's limits, when it is evaluated)."""
    try:
        scan = _TEXT_NUMBERS.scan_once
        start = _WHITESPACE(text, 0).end()
        if text[start:start + 1] != "[":
            _TEXT_NUMBERS.decode(text)  # valid JSON, not an array (or raises: not JSON)
            return False
        items: list[str] = []
        i = _WHITESPACE(text, start + 1).end()
        if text[i:i + 1] == "]":
            end = i + 1
        else:
            while True:
                _, end = scan(text, i)
                items.append(text[i:end])
                i = _WHITESPACE(text, end).end()
                if text[i:i + 1] == "]":
                    end = i + 1
                    break
                if text[i:i + 1] != ",":
                    return None
                i = _WHITESPACE(text, i + 1).end()
        if _WHITESPACE(text, end).end() != len(text):
            return None  # something after the array
        return items
    except (ValueError, StopIteration, RecursionError):
        return None


def paper_sample(path: Path) -> Any:
    """A shipped Binance sample as plain JSON for the paper exchange, which stores it verbatim
    in its own state file (the engine itself reads samples with engine.numbers.loads)."""
    return json.loads(path.read_text(encoding="utf-8"))


def open_shipped_paper(state_dir: str | Path | None, **options: Any) -> Any:
    """The paper exchange over the shipped Binance samples (see exchange.paper.embedded.open_paper
    for ``options``: mark_prices, clock, extra_credentials, dual_side_position)."""
    from exchange.paper.embedded import open_paper

    return open_paper(
        state_dir,
        exchange_info=paper_sample(default_exchange_info_path()),
        leverage_brackets=paper_sample(default_leverage_brackets_path()),
        **options,
    )
