"""The ep4 command line as a user meets it: outputs, exit codes, error messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_execute_jsonl_gives_one_result_per_line(capsys) -> None:
    code, out, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--exchange", "dry-run")
    assert code == 0 and err == ""
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["reason_code"] for r in results] == [
        "DRY_RUN", "DUPLICATE_EXECUTION", "NOT_AUTHORIZED", "ACTION_NOOP", "INVALID_QUANTITY",
        "MIN_INTERVAL_NOT_ELAPSED", "INPUT_NOT_JSON", "DRY_RUN",
    ]
    assert results[0]["order"]["params"]["quantity"] == "0.010"


def test_execute_single_json_and_stdin(capsys, monkeypatch) -> None:
    code, out, _ = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"), "--exchange", "dry-run")
    assert code == 0 and json.loads(out)["reason_code"] == "DRY_RUN"
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO((EX / "decision-open-limit.json").read_text()))
    code, out2, _ = run(capsys, "execute", "-", "--context", str(EX / "context.json"), "--exchange", "dry-run")
    assert code == 0 and out2 == out


def test_usage_errors_exit_2_with_a_clear_message(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(tmp_path / "none.json"), "--exchange", "dry-run")
    assert code == 2 and out == "" and "context file not found" in err
    bad = tmp_path / "ctx.json"
    bad.write_text(json.dumps({"exchange": "BINANCE_PERP", "symbol": "BTCUSDT", "timestamp": "soon"}))
    code, out, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(bad), "--exchange", "dry-run")
    assert code == 2 and "timestamp" in err and "Traceback" not in err
    code, _, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--exchange", "dry-run")
    assert code == 2 and "--context" in err
    code, _, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--exchange", "binance", "--state-dir", str(tmp_path / "s"))
    assert code == 2 and "EP4_API_KEY" in err
    code, _, err = run(capsys, "execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--constraints", str(EX / "context.json"), "--exchange", "dry-run")
    assert code == 2 and "exchangeInfo" in err


def test_check_ok_and_broken(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "check", str(ROOT / "policies" / "binance-perp-default.yaml"))
    assert code == 0 and "13 risk gates" in out and "sha256:" in out
    broken = tmp_path / "b.yaml"
    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text().replace("../gates/", str(ROOT / "gates") + "/").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    broken.write_text(text.replace("cooldownMs: 300000", "cooldownMs: soon"))
    code, _, err = run(capsys, "check", str(broken))
    line = text.splitlines().index("    cooldownMs: 300000") + 1
    assert code == 1 and f"{broken}:{line}:5: spec.postFailure.cooldownMs" in err


def test_explain_shows_gates_values_and_outcome(capsys) -> None:
    code, out, _ = run(capsys, "explain", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"))
    assert code == 0
    assert "pass  exposure.max-abs-position" in out
    assert "saw: intent.kind = \"ORDER\", intent.increases_exposure = true, intent.worst_case_position_after = 0.040, params.max_position_qty = 0.5" in out
    assert "outcome: NOOP DRY_RUN" in out


def test_schema_outputs_json_schema(capsys) -> None:
    for what in ("decision", "context", "bundle", "result"):
        code, out, _ = run(capsys, "schema", what)
        assert code == 0 and json.loads(out)["$schema"].startswith("https://json-schema.org/")
    assert "ACTION_OPEN_POSITION" in run(capsys, "schema", "decision")[1]


def test_console_script_process_level(tmp_path: Path) -> None:
    """The real entry point: unknown subcommand is a usage error, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "frobnicate"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr


def test_determinism_across_processes() -> None:
    """Spec §8.1: the same inputs give byte-identical output, process after process."""
    cmd = [sys.executable, "-m", "engine.cli", "execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--exchange", "dry-run"]
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    a = subprocess.run(cmd, capture_output=True, cwd=ROOT, env={**env, "PYTHONHASHSEED": "1"})
    b = subprocess.run(cmd, capture_output=True, cwd=ROOT, env={**env, "PYTHONHASHSEED": "2"})
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 8


def test_run_examples_prints_the_session_table_and_verifies(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "run-examples", "--state-dir", str(tmp_path / "s"))
    assert code == 0
    for word in ("SUCCESS", "NOOP", "REJECTED", "FAILED_SAFE", "DUPLICATE_EXECUTION", "COOLDOWN_ACTIVE", "forced cancel", "ORDER_FILLED"):
        assert word in out
    assert "chain verified" in out and "22 of 22 records recomputed byte for byte" in out
    assert "rate limited (429): no forced cancel" in out  # Binance: back off; nothing more is sent


# --- evaluators (issue 6) ---


def test_both_evaluators_give_the_same_bytes(capsys) -> None:
    argv = ["execute", str(EX / "decisions.jsonl"), "--context", str(EX / "context.json"), "--exchange", "dry-run"]
    code, compiled, _ = run(capsys, *argv)
    code2, interpreted, _ = run(capsys, *argv, "--evaluator", "interpreter")
    assert code == code2 == 0 and compiled == interpreted and len(compiled.splitlines()) == 8


def test_explain_compiled_prints_the_python_a_gate_runs(capsys) -> None:
    code, out, _ = run(capsys, "explain", "--compiled", "exposure.max-notional")
    assert code == 0
    assert "def gate_reference(act):" in out and "def gate_fast(act):" in out and "def gate(act):" in out
    assert "intent.worst_case_notional_after <= params.max_notional" in out  # the CEL it came from, as a comment
    code, _, err = run(capsys, "explain", "--compiled", "exposure.nope")
    assert code == 2 and "no gate 'exposure.nope'" in err and "'chains'" in err
    code, out, _ = run(capsys, "explain", "--compiled", "chains")  # what runs the gates' fast paths, per rule
    assert code == 0 and out.count("def chain(act, start):") == 3 and "# Rule 3: 13 gates" in out and "# Rule 4: 13 gates" in out
    assert "# Rules 3 and 4: all 26 gates" in out
    assert "h1 = DGET(r_" in out and "# exposure.max-notional" in out and "# exchange.leverage-bracket" in out


def test_bench_reports_both_evaluators_and_their_ratio(capsys) -> None:
    code, out, _ = run(capsys, "bench", "--runs", "30", "--interpreter-runs", "3")
    assert code == 0
    assert "compiled    runs     30" in out and "interpreter runs      3" in out and "faster than the interpreter" in out
    code, _, err = run(capsys, "bench", "--runs", "0")
    assert code == 2 and "--runs" in err


def test_help_does_not_import_the_engine() -> None:
    # the whole parser, as `ep4 --help` builds it (a command's module is imported when it runs)
    code = ("import sys; from engine.cli.main import build_parser; build_parser(); "
            "print(sorted(x for x in ('engine.bundle', 'engine.cel', 'engine.models', 'pydantic', 'cryptography') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_a_decision_on_a_cached_bundle_does_not_import_the_yaml_reader(tmp_path: Path) -> None:
    """ruamel.yaml and the bundle's document models are imported only when a bundle is read from its
    files: not for a decision on a bundle from the compiled-bundle cache, but again when the cache is off."""
    code = ("import io, sys; from engine.cli.main import main; out = sys.stdout; sys.stdout = io.StringIO(); "
            "rc = main(['execute', sys.argv[1], '--context', sys.argv[2], '--exchange', 'dry-run']); sys.stdout = out; "
            "print(rc, sorted(x for x in ('ruamel.yaml', 'engine.bundle_yaml', 'engine.bundle_document') if x in sys.modules))")
    argv = [sys.executable, "-c", code, str(EX / "decision-open-limit.json"), str(EX / "context.json")]

    def imported(**env: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True,
                              env={**os.environ, "EP4_CACHE_DIR": str(tmp_path), **env}).stdout.strip()

    read = "0 ['engine.bundle_document', 'engine.bundle_yaml', 'ruamel.yaml']"
    assert imported() == read  # a cold cache: read from the files
    assert imported() == "0 []"  # the entry written then
    assert imported(EP4_BUNDLE_CACHE="0") == read


def test_jsonl_is_streamed_one_result_per_line(capsys, tmp_path: Path) -> None:
    line = (EX / "decision-open-limit.json").read_text().replace("\n", " ")
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(line.replace('"d-0001"', f'"d-{i}"') for i in range(300)) + "\n")
    code, out, _ = run(capsys, "execute", str(many), "--context", str(EX / "context.json"), "--exchange", "dry-run")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 300
    assert json.loads(lines[0])["reason_code"] == "DRY_RUN"
    assert {json.loads(x)["reason_code"] for x in lines[1:]} <= {"MIN_INTERVAL_NOT_ELAPSED", "MAX_ACTIONS_PER_MINUTE_EXCEEDED"}


def test_one_paper_exchange_per_state_dir_at_a_time(tmp_path: Path) -> None:
    """The embedded paper exchange is loaded from the state directory, used, and written back whole.
    Two processes at once each wrote back their own copy, and the last one lost the other's orders
    (reproduced: 8 fills in the ledger, 4 orders in the paper account, 1 run in 5). Now a process
    holds the paper exchange's lock from load to save: a second one says it is waiting, then works
    on the first one's saved state."""
    import time

    from engine.cli.inputs import open_shipped_paper
    from exchange import BinanceClient, Credentials, PaperTransport
    from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL, paper_lock, save_paper

    state = tmp_path / "state"
    decision = tmp_path / "d.json"
    decision.write_text(json.dumps({"decision_id": "cli-1", "decision_code": "AUTHORIZED_ACTION", "action": {
        "type": "ACTION_OPEN_POSITION", "action_id": "a", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.001",
        "order_type": "MARKET", "reduce_only": False}}))
    with paper_lock(state):  # this test is the process using the paper exchange (its pid in the lock file)
        paper = open_shipped_paper(state, mark_prices={}, clock=lambda: int(time.time() * 1000))
        other = subprocess.Popen([sys.executable, "-m", "engine.cli", "execute", str(decision), "--exchange", "paper", "--state-dir", str(state)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = other.stderr.readline()  # said before it waits; without the lock it ran to its end here
        with BinanceClient(PAPER_BASE_URL, Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET), transport=PaperTransport(paper),
                           connect_timeout_ms=2000, read_timeout_ms=5000) as client:
            now = str(int(time.time() * 1000))
            reply = client.send_signed("POST", "/fapi/v1/order", [
                ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.002"), ("newClientOrderId", "mine"),
                ("recvWindow", "5000"), ("timestamp", now)])
        assert reply.http_status == 200, reply
        save_paper(paper, state)
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, waiting + err
    assert "ep4: waiting" in waiting and f"pid {os.getpid()}" in waiting and "ep4 paper serve" in waiting, waiting
    assert json.loads(out)["result"] == "SUCCESS", out
    orders = json.loads((state / "paper-exchange.json").read_text())["account"]["orders"]
    assert sorted(o["client_order_id"] for o in orders) == sorted(["mine", json.loads(out)["order"]["params"]["newClientOrderId"]]), orders


def test_the_embedded_paper_exchange_keeps_an_acknowledged_order_if_the_process_dies(tmp_path: Path) -> None:
    """The embedded paper exchange is saved after each request that may change it, before the answer
    is given: an order ep4 saw acknowledged is in the paper account even if the process dies before
    it ends (it was saved only at the end, so a killed process's orders vanished, unlike on an
    exchange, and `ep4 reconcile` found them missing)."""
    import time

    from engine.bundle import load_bundle
    from engine.cli.venue import open_venue

    venue = open_venue("paper", bundle=load_bundle(ROOT / "policies" / "binance-perp-default.yaml"), state_dir=tmp_path,
                       base_url=None, follow_context=False)
    try:
        reply = venue.client.send_signed("POST", "/fapi/v1/order", [
            ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.002"), ("newClientOrderId", "acked"),
            ("recvWindow", "5000"), ("timestamp", str(int(time.time() * 1000)))])
        assert reply.http_status == 200, reply
        # the process "dies" here: the file is read as the next process would read it
        orders = json.loads((tmp_path / "paper-exchange.json").read_text())["account"]["orders"]
        assert [o["client_order_id"] for o in orders] == ["acked"]
    finally:
        venue._stack.close()  # the lock only (close() would save again)


def test_a_paper_exchange_kept_too_long_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    """Waiting for another process's paper exchange is bounded: past the bound, the error names the
    holder (pid and command) and how to share one paper exchange; `ep4 paper serve` on a directory
    whose paper exchange is in use refuses at once (exit 2) instead of serving a second copy."""
    import pytest

    from exchange.paper.embedded import PaperBusy, paper_lock

    with paper_lock(tmp_path):
        with pytest.raises(PaperBusy, match=rf"in use by another process \(pid {os.getpid()}: .*\) after 0.2 s"):
            with paper_lock(tmp_path, timeout_s=0.2):
                pass
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "paper", "serve", "--port", "1", "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "in use by another process" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    with paper_lock(tmp_path, timeout_s=0.2):  # released: taken at once
        pass


def test_the_console_command_exits_with_mains_code_and_all_its_output(tmp_path: Path) -> None:
    """`ep4` (engine.cli.run: main, then gc.freeze before the interpreter finalises) prints what
    main prints in-process, flushes all of it, exits with main's code, and leaves a paper
    execution's ledger and audit log whole."""
    import tomllib

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["ep4"] == "engine.cli:run"
    line = (EX / "decision-open-limit.json").read_text().replace("\n", " ")
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(line.replace('"d-0001"', f'"d-{i}"') for i in range(300)) + "\n")

    def ep4(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "EP4_CACHE_DIR": str(tmp_path / "cache")})

    dry = ep4("execute", str(many), "--context", str(EX / "context.json"), "--exchange", "dry-run")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["execute", str(many), "--context", str(EX / "context.json"), "--exchange", "dry-run"]) == 0
    assert dry.returncode == 0 and dry.stdout == buf.getvalue() and len(dry.stdout.splitlines()) == 300
    missing = ep4("execute", str(tmp_path / "nope.json"), "--exchange", "dry-run")
    assert missing.returncode == 2 and "ep4: error:" in missing.stderr and "Traceback" not in missing.stderr
    state = tmp_path / "state"
    paper = ep4("execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"), "--exchange", "paper",
                "--state-dir", str(state))
    assert paper.returncode == 0 and json.loads(paper.stdout)["result"] == "SUCCESS", paper.stdout + paper.stderr
    verify = ep4("audit", "verify", str(state / "audit.jsonl"), "--state-dir", str(state))
    assert verify.returncode == 0 and verify.stdout.startswith("ok "), verify.stdout + verify.stderr


def test_paper_serve_on_a_port_in_use_says_so(capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "paper", "serve", "--port", str(port))
    assert code == 2 and out == ""
    assert err.strip() == f"ep4: error: cannot serve on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("which,text", [
    ("constraints", '{"symbols":[1]}'),
    ("constraints", '{"symbols":[{"symbol":"BTCUSDT","filters":null}]}'),
    ("constraints", '{"symbols":[{"symbol":"BTCUSDT","filters":[1]}]}'),
    ("constraints", '{"symbols":[{"symbol":"BTCUSDT","filters":[],"orderTypes":5}]}'),
    ("brackets", '[{"symbol":"BTCUSDT","brackets":null}]'),
    ("brackets", '[{"symbol":"BTCUSDT","brackets":"x"}]'),
])
def test_an_exchange_info_or_brackets_file_of_the_wrong_shape_is_one_error_naming_it(capsys, tmp_path: Path, which: str, text: str) -> None:
    """Before: AttributeError / TypeError tracebacks out of engine/constraints.py (execute, explain, replay),
    and a brackets problem named the exchangeInfo file."""
    bad = tmp_path / f"{which}.json"
    bad.write_text(text)
    extra = (["--constraints", str(bad)] if which == "constraints" else
             ["--constraints", str(ROOT / "policies" / "samples" / "binance-usdm-exchangeInfo.json"), "--leverage-brackets", str(bad)])
    code, out, err = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--context", str(EX / "context.json"),
                         "--exchange", "dry-run", *extra)
    assert code == 2 and out == "" and err.startswith(f"ep4: error: {bad}: ") and "not the shape Binance sends" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unexpected_error_is_one_line_without_a_traceback_or_a_secret(capsys, monkeypatch) -> None:
    """The last line of defence: an exception no command expected is one `ep4: error:` line and exit 2
    (EP4_DEBUG=1 lets it through), with this environment's API key and secret blanked out."""
    import importlib

    cli = importlib.import_module("engine.cli.main")  # the module (engine.cli.main is also its function's name)
    monkeypatch.setenv("EP4_API_KEY", "AKIAFAKEKEY123")
    monkeypatch.setenv("EP4_API_SECRET", "s3cr3t-value")

    def boom(args):
        raise RuntimeError("quoting AKIAFAKEKEY123 and s3cr3t-value")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "check", boom))
    code = cli.main(["check", "policies/binance-perp-default.yaml"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ep4: error: unexpected RuntimeError: quoting <redacted> and <redacted>")
    assert "Traceback" not in err and "AKIAFAKEKEY123" not in err and "s3cr3t-value" not in err
    monkeypatch.setenv("EP4_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["check", "policies/binance-perp-default.yaml"])


def _with_func(parser, command: str, func):
    """``parser`` with ``command``'s handler replaced."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.choices[command].set_defaults(func=func)
    return parser


def test_live_constraints_from_an_unreachable_exchange_are_one_error(capsys, monkeypatch, tmp_path: Path) -> None:
    """Reading the exchange's clock for the constraints was outside the error handling: a traceback."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("EP4_API_KEY", "AKIAFAKEKEY123")
    monkeypatch.setenv("EP4_API_SECRET", "fake-secret-value")
    code, out, err = run(capsys, "execute", str(EX / "decision-open-limit.json"), "--exchange", "binance-testnet",
                         "--base-url", f"http://127.0.0.1:{port}", "--state-dir", str(tmp_path / "s"))
    warning, error = err.splitlines()  # the shipped bundle declares executionMode paper: said first (docs/bundles.md)
    assert warning.startswith("ep4: warning: binance-perp-default 1.1.0 declares executionMode paper; this run is --exchange binance-testnet")
    assert code == 2 and out == "" and error.startswith("ep4: error: cannot read exchange constraints: GET /fapi/v1/time")
    assert "unexpected" not in err and "fake-secret-value" not in err


_DUP_CODE = ('{"decision_id": "d-dup", "decision_code": "HOLD", "decision_code": "AUTHORIZED_ACTION",\n'
             ' "action": {"type": "ACTION_OPEN_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "side": "LONG",\n'
             '            "quantity": "0.010", "order_type": "MARKET", "reduce_only": false}}')
_DUP_QTY = ('{"decision_id": "d-q", "decision_code": "AUTHORIZED_ACTION", "action": {"type": "ACTION_OPEN_POSITION", '
            '"action_id": "a-1", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.01", "quantity": "0.02", '
            '"order_type": "MARKET", "reduce_only": false}}')
_NUMBER_IDS = '{"decision_id": 12.5, "decision_code": "AUTHORIZED_ACTION", "action": {"type": "ACTION_NOOP", "action_id": 7.0}}'
_AS_STRING = json.dumps('{"decision_id": "d-s", "decision_code": "AUTHORIZED_ACTION", "action": {"type": "ACTION_NOOP", "action_id": "a"}}')


@pytest.mark.parametrize("how", [".json file", ".json array", "pretty stdin array", ".jsonl file"])
def test_a_json_document_is_evaluated_as_written_not_parsed_and_written_again(tmp_path, capsys, monkeypatch, how) -> None:
    """Spec §4 Rules 1-2 read the decision exactly as authorized. A .json file (one document or an array)
    and a pretty-printed document on stdin were parsed and written out again, which dropped repeated keys
    (two decision_codes executed; of two quantities the last was sent), turned number ids into text and
    took a JSON string holding a decision for the decision. Each now gives what its own line gives in a
    .jsonl file."""
    texts = [_DUP_CODE, _DUP_QTY, _NUMBER_IDS, _AS_STRING]
    expected = [("NOOP", "DECISION_CODE_DUPLICATED"), ("REJECTED", "DUPLICATE_KEY"), ("REJECTED", "INVALID_DECISION_ID"),
                ("REJECTED", "INPUT_NOT_OBJECT")]
    got = []
    context = ["--context", str(EX / "context.json"), "--exchange", "dry-run"]
    if how == ".json file":
        for i, text in enumerate(texts):
            path = tmp_path / f"d{i}.json"
            path.write_text(text)
            code, out, _ = run(capsys, "execute", str(path), *context)
            got += [json.loads(line) for line in out.splitlines()]
    elif how == ".json array":
        path = tmp_path / "all.json"
        path.write_text("[\n " + ",\n ".join(texts) + "\n]\n")
        code, out, _ = run(capsys, "execute", str(path), *context)
        got = [json.loads(line) for line in out.splitlines()]
    elif how == "pretty stdin array":
        monkeypatch.setattr("sys.stdin", io.StringIO("[\n " + ",\n ".join(texts) + "\n]\n"))
        code, out, _ = run(capsys, "execute", "-", *context)
        got = [json.loads(line) for line in out.splitlines()]
    else:
        path = tmp_path / "all.jsonl"
        path.write_text("\n".join(t.replace("\n", "") for t in texts) + "\n")
        code, out, _ = run(capsys, "execute", str(path), *context)
        got = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["result"], r["reason_code"]) for r in got] == expected


def test_a_cut_array_on_stdin_is_one_broken_document_not_its_lines(capsys, monkeypatch) -> None:
    """Second review: stdin holding a pretty-printed array without its closing "]" fell back to reading
    line by line, and a line that was a whole decision was executed. A document that opens an array is
    one document: broken, it is one INPUT_NOT_JSON result, as the same bytes in a .json file are."""
    one = '{"decision_id": "d-t%d", "decision_code": "AUTHORIZED_ACTION", "action": {"type": "ACTION_NOOP", "action_id": "a"}}'
    monkeypatch.setattr("sys.stdin", io.StringIO("[\n" + one % 1 + ",\n" + one % 2 + "\n"))
    code, out, _ = run(capsys, "execute", "-", "--context", str(EX / "context.json"), "--exchange", "dry-run")
    assert code == 0 and [(r["result"], r["reason_code"]) for r in map(json.loads, out.splitlines())] == [("REJECTED", "INPUT_NOT_JSON")]
    # JSON Lines whose first line is broken still give one result per line
    monkeypatch.setattr("sys.stdin", io.StringIO('{"decision_id": \n' + one % 3 + "\n"))
    code, out, _ = run(capsys, "execute", "-", "--context", str(EX / "context.json"), "--exchange", "dry-run")
    assert [r["reason_code"] for r in map(json.loads, out.splitlines())] == ["INPUT_NOT_JSON", "ACTION_NOOP"]


@pytest.mark.parametrize("what", ["--context", "--constraints"])
def test_a_context_or_constraints_file_with_a_repeated_key_is_refused(tmp_path, capsys, what) -> None:
    """A context or exchangeInfo file that repeats a key was read with the last value winning (a review
    noticed it): "available_margin": "2500", "available_margin": "999999" gave the gates 999999. Which
    was meant is ambiguous: one clear error naming the key, nothing evaluated."""
    if what == "--context":
        text = (EX / "context.json").read_text().replace('"available_margin": "2500"', '"available_margin": "2500", "available_margin": "999999"')
        key = "account.available_margin"
    else:
        text = (ROOT / "policies" / "samples" / "binance-usdm-exchangeInfo.json").read_text()
        text = text.replace('"timezone": "UTC"', '"timezone": "UTC", "timezone": "UTC"', 1)
        key = "timezone"
    assert text.count(key.split(".")[-1]) >= 2
    path = tmp_path / "in.json"
    path.write_text(text)
    args = ["execute", str(EX / "decision-open-limit.json"), "--exchange", "dry-run", "--context", str(EX / "context.json"), what, str(path)]
    if what == "--context":
        args = ["execute", str(EX / "decision-open-limit.json"), "--exchange", "dry-run", "--context", str(path)]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and "a key appears more than once" in err and key in err, err
