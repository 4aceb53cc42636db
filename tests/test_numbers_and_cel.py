"""Exact decimals end to end, and the CEL layer's load-time checks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.cel import CelCompileError, CelEvaluationError, FieldSpec, compile_expression, to_cel
from engine.numbers import DecimalParseError, decimal_text, loads, parse_decimal

V = {
    "q": FieldSpec("decimal"),
    "step": FieldSpec("decimal"),
    "o": FieldSpec("object", fields={"n": FieldSpec("decimal"), "flag": FieldSpec("bool"), "lst": FieldSpec("list")}),
}


def ev(expr: str, **values):
    return compile_expression(expr, V).evaluate({k: to_cel(v) for k, v in values.items()})


@pytest.mark.parametrize("value", [True, 0.1, float("nan"), "NaN", "inf", "", " 1", "1,5", None, [1]])
def test_parse_decimal_refuses(value) -> None:
    with pytest.raises(DecimalParseError):
        parse_decimal(value)


@pytest.mark.parametrize("value,text", [("0.010", "0.010"), (5, "5"), ("1e-5", "0.00001"), (Decimal("1E+3"), "1000"), ("-0", "0")])
def test_decimal_text_is_exact_positional(value, text) -> None:
    assert decimal_text(parse_decimal(value)) == text


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(sign=st.integers(0, 1), digits=st.lists(st.integers(0, 9), min_size=1, max_size=40), exponent=st.integers(-60, 60))
@example(sign=1, digits=[0], exponent=0)
@example(sign=1, digits=[0], exponent=-2)
@example(sign=0, digits=[0], exponent=-8)
@example(sign=0, digits=[1], exponent=-7)
@example(sign=0, digits=[1, 2, 3], exponent=2)
def test_decimal_text_is_format_f(sign: int, digits: list[int], exponent: int) -> None:
    """The positional text of every finite decimal is what ``format(value, "f")`` writes ("-0" and
    "+0" written "0"), whichever of str() or format() wrote it."""
    value = Decimal((sign, tuple(digits), exponent))
    want = format(value, "f")
    assert decimal_text(value) == ("0" if want in ("-0", "+0") else want)
    assert "E" not in decimal_text(value) and "e" not in decimal_text(value)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("-NaN"), Decimal("NaN12"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_decimal_text_refuses_what_is_not_finite(value) -> None:
    with pytest.raises(DecimalParseError):
        decimal_text(value)


def test_loads_keeps_json_numbers_exact_and_refuses_nan() -> None:
    assert loads('{"q": 0.30000000000000004}')["q"] == Decimal("0.30000000000000004")
    with pytest.raises(DecimalParseError):
        loads('{"q": NaN}')
    with pytest.raises(DecimalParseError):
        loads('{"q": -Infinity}')


def test_alignment_is_exact() -> None:
    assert ev("aligned(q, 0, step)", q=Decimal("0.3"), step=Decimal("0.1")) is True
    assert ev("aligned(q, 0, step)", q=Decimal("0.30000000000000004"), step=Decimal("0.1")) is False
    assert ev("aligned(q, 0, 0)", q=Decimal("0.123")) is True  # Binance: step 0 disables the rule


def test_numeric_literals_are_exact_decimals() -> None:
    assert ev("q == 0.3", q=Decimal("0.3")) is True  # a binary double 0.3 would differ
    assert ev("0.1 + 0.2 == 0.3") is True
    assert ev("0 < q && 2 * q == 0.6", q=Decimal("0.3")) is True


def test_inexact_arithmetic_is_an_error_not_a_rounding() -> None:
    with pytest.raises(CelEvaluationError, match="inexact decimal arithmetic"):
        ev("q / 3 > 0", q=Decimal(1))


def test_missing_member_is_an_error() -> None:
    with pytest.raises(CelEvaluationError):
        ev("o.n > 1", o={"flag": True, "lst": []})


def test_null_comparisons_on_lists_and_maps() -> None:
    assert ev("o.lst != null && o != null", o={"n": 1, "flag": True, "lst": [1]}) is True


@pytest.mark.parametrize(
    "expr,line,col,fragment",
    [
        ("q >", 1, 3, "syntax error"),
        ("qq > 1", 1, 1, "unknown variable 'qq'"),
        ("q > 1 &&\n  o.nn > 1", 2, 5, "unknown field 'nn'"),
        ("q + 1", 1, 1, "must evaluate to a boolean"),
        ("o.n", 1, 1, "must evaluate to a boolean"),
        ("launch(q)", 1, 1, "unknown function 'launch'"),
    ],
)
def test_compile_errors_point_at_the_text(expr, line, col, fragment) -> None:
    with pytest.raises(CelCompileError) as info:
        compile_expression(expr, V)
    assert (info.value.line, info.value.column) == (line, col)
    assert fragment in info.value.message


def test_boolean_forms_are_accepted() -> None:
    for expr in ("o.flag", "!o.flag", "o.lst.exists(x, x > q)", "has(o.n)", "q > 1 ? o.flag : false", "aligned(q, 0, step)"):
        compile_expression(expr, V)


def test_macro_variables_are_not_unknown() -> None:
    assert ev("o.lst.all(x, x > 0)", o={"n": 1, "flag": True, "lst": [1, 2]}) is True


def test_cached_parser_tables_parse_like_a_fresh_build(tmp_path, monkeypatch) -> None:
    import lark
    from celpy.celparser import CELParser

    from engine.cel.grammar import _OPTIONS, cel_parser

    monkeypatch.setenv("EP4_CACHE_DIR", str(tmp_path))
    first = cel_parser()  # built, then saved
    assert list(tmp_path.glob("cel-parser-*.lark"))
    cached = cel_parser()  # loaded
    grammar = (__import__("pathlib").Path(__import__("celpy.celparser").celparser.__file__).parent / "cel.lark").read_text()
    fresh = lark.Lark(grammar, lexer_callbacks={"IDENT": CELParser.ambiguous_literals}, **_OPTIONS)
    for text in ['a.b > 1 || !c && d in [1, 2]', 'x.all(v, v.q != null) ? "s" : {"k": true}["k"]', "-1.5e3 % 2u"]:
        assert cached.parse(text) == fresh.parse(text) == first.parse(text)
    (next(tmp_path.glob("cel-parser-*.lark"))).write_bytes(b"garbage")
    assert cel_parser().parse("a > 1") == fresh.parse("a > 1")  # a damaged cache is rebuilt, not trusted


# --- canonical_json: the encoder made once writes what the per-call encoder wrote ---



def _encoded(f, value):
    try:
        return ("ok", f(value))
    except Exception as exc:  # noqa: BLE001 - the kind and text are what is compared
        return ("error", type(exc).__name__, str(exc))


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.frozensets(st.integers(0, 9), max_size=3), st.builds(object),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 3), st.booleans(), st.none(), st.floats(0, 1),
                                  st.decimals(0, 1, places=1), st.tuples(st.integers(0, 1))), inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(_values)
def test_canonical_json_writes_what_the_per_call_encoder_wrote(value) -> None:
    """Same text or same exception (mixed key types, objects it cannot write, non-finite floats)."""
    from engine.numbers import _CANONICAL, canonical_json

    assert _encoded(canonical_json, value) == _encoded(_CANONICAL.encode, value)


def test_canonical_json_refuses_circular_and_too_deep_values_as_before() -> None:
    from engine.numbers import _CANONICAL, canonical_json

    loop: list = [1]
    loop.append(loop)
    ring: dict = {"a": 1}
    ring["self"] = {"back": ring}
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    for value in (loop, ring, deep):
        first = _encoded(canonical_json, value)
        assert first[0] == "error" and first == _encoded(_CANONICAL.encode, value)
    assert canonical_json({"b": [Decimal("1E-5"), 2], "a": "é"}) == '{"a":"é","b":["0.00001",2]}'  # still clean after errors


def test_loads_refuses_a_lone_surrogate_written_raw_or_escaped() -> None:
    """Raw (text read with surrogateescape) or escaped; non-ASCII text without one is read as usual."""
    from engine.numbers import InvalidText

    for text in ('{"a": "x\udc80"}', '{"a": "\\ud800"}', '{"\udcff": 1}', '["é", "\ud83d"]'):
        with pytest.raises(InvalidText):
            loads(text)
    assert loads('{"a": "é\U0001f600", "b": "\\ud83d\\ude00"}') == {"a": "é\U0001f600", "b": "\U0001f600"}


# --- cel-python's StringType compares and hashes in C (engine.cel.celpy_patches, change 2) ---


def test_string_type_delegations_are_removed_only_when_they_are_cel_pythons() -> None:
    from celpy import celtypes

    from engine.cel import celpy_patches

    assert celpy_patches.STRINGS_PLAIN
    assert not {"__eq__", "__ne__", "__hash__"} & set(celtypes.StringType.__dict__)
    reference = celpy_patches._reference()

    class Altered(str):
        def __eq__(self, other):  # the same names and constants, another meaning
            return not super().__eq__(other)

        def __ne__(self, other):
            return super().__ne__(other)

        def __hash__(self):
            return super().__hash__() + 1

    assert not celpy_patches._is_delegation(Altered.__dict__["__eq__"], reference["__eq__"])
    assert not celpy_patches._is_delegation(Altered.__dict__["__hash__"], reference["__hash__"])
    assert celpy_patches._is_delegation(Altered.__dict__["__ne__"], reference["__ne__"])
    assert not celpy_patches._is_delegation(len, reference["__eq__"])


def _outcome(op, a, b):
    try:
        return "value", op(a, b)
    except Exception as exc:  # what the comparison raised is part of its meaning (IntType refuses a string)
        return "raised", type(exc), str(exc).replace(str(type(a)), "S").replace(str(type(b)), "S")


def test_string_type_compares_and_hashes_as_its_python_delegations_did() -> None:
    from celpy import celtypes

    from engine.cel import celpy_patches

    # cel-python's StringType with its three methods back: what it was before the patch
    Before = celpy_patches._reference_class(celtypes.StringType)

    class Other(str):
        pass

    texts = ["", "a", "ORDER", "é", "\U0001f431", "a\x00b"]
    others = [None, 0, 1, True, 1.5, Decimal("1"), b"a", ["a"], ("a",), {"a": 1}, celtypes.BoolType(True),
              celtypes.IntType(1), celtypes.BytesType(b"a")]
    others += [t for t in texts] + [Other(t) for t in texts] + [Before(t) for t in texts]
    for text in texts:
        now, before = celtypes.StringType(text), Before(text)
        assert hash(now) == hash(before) == hash(text)
        for other in others + [celtypes.StringType(t) for t in texts]:
            other_before = Before(str(other)) if type(other) is celtypes.StringType else other
            for op in (lambda a, b: a == b, lambda a, b: a != b, lambda a, b: b == a, lambda a, b: b != a,
                       lambda a, b: a.__eq__(b), lambda a, b: a.__ne__(b)):
                assert _outcome(op, now, other) == _outcome(op, before, other_before), (text, other)
        assert (now in [1, "x", text]) is (before in [1, "x", text])
        assert {text: 1}.get(now) == {text: 1}.get(before) == 1


def _decimal_texts():
    digits = st.text("0123456789", min_size=0, max_size=120)
    exponent = st.one_of(st.just(""), st.builds(lambda e, s, n: e + s + str(n), st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
                                                st.integers(0, 250)))
    number = st.builds(lambda s, a, p, b, e: s + a + p + b + e, st.sampled_from(["", "+", "-"]), digits,
                       st.sampled_from(["", "."]), digits, exponent)
    return st.one_of(number, st.text(max_size=20), st.sampled_from(["0", "-0", "0e999", "1e100", "1e101", "1e-100", "1e-101",
                                                                    "9" * 100, "9" * 101, " 1", "1_0", "NaN", "٠.١", "0.01\n"]))


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(text=_decimal_texts())
def test_parse_decimal_of_text_is_the_checked_reading(text) -> None:
    """parse_decimal's short-text case gives what the full reading (_decimal_from_text) gives: the same
    Decimal (digits, exponent, sign) or the same refusal."""
    from engine.numbers import _decimal_from_text

    def outcome(read):
        try:
            value = read(text)
        except DecimalParseError as exc:
            return "refused", str(exc)
        return "value", value.as_tuple()

    assert outcome(parse_decimal) == outcome(_decimal_from_text)
