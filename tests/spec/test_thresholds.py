"""Thresholds: parsing, checking, messages, merging, files."""

import json
import math

import pytest

from pytest_meshperf.errors import ThresholdError, UsageError
from pytest_meshperf.spec.threshold_lists import load_threshold_file, parse_thresholds
from pytest_meshperf.spec.thresholds import (
    OPS,
    Threshold,
    ThresholdResult,
    check_all,
    merge_thresholds,
    parse_threshold,
)

CLI = "--mesh-threshold"


def t(expr, origin=CLI):
    return parse_threshold(expr, origin)


# --- parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, metric, op, value, unit",
    [
        ("throughput>=9Gbit/s", "throughput_bps", ">=", 9e9, "Gbit/s"),
        ("throughput >= 9 Gbit/s", "throughput_bps", ">=", 9e9, "Gbit/s"),
        ("throughput>9Gbps", "throughput_bps", ">", 9e9, "Gbit/s"),
        ("throughput>=1GB/s", "throughput_bps", ">=", 8e9, "GB/s"),
        ("throughput_bps>=1e9", "throughput_bps", ">=", 1e9, ""),
        ("Throughput_Reverse>=9G", "throughput_reverse_bps", ">=", 9e9, "Gbit/s"),
        ("retransmits<=100", "retransmits", "<=", 100.0, ""),
        ("retransmits==0", "retransmits", "==", 0.0, ""),
        ("retransmits<1k", "retransmits", "<", 1000.0, ""),
        ("jitter<=1ms", "jitter_ms", "<=", 1.0, "ms"),
        ("jitter<=500us", "jitter_ms", "<=", 0.5, "us"),
        ("jitter_ms<=2", "jitter_ms", "<=", 2.0, ""),
        ("loss<=0.1%", "lost_percent", "<=", 0.1, "%"),
        ("lost_percent<=0.1", "lost_percent", "<=", 0.1, ""),
        ("cpu_local<=80%", "cpu_local_percent", "<=", 80.0, "%"),
        ("p99_latency<=200us", "latency_p99_us", "<=", 200.0, "us"),
        ("p99 latency <= 1ms", "latency_p99_us", "<=", 1000.0, "ms"),
        ("latency_p50_us<150", "latency_p50_us", "<", 150.0, ""),
        ("transaction_rate>=10000", "transaction_rate", ">=", 10000.0, ""),
        ("transaction_rate>=10k/s", "transaction_rate", ">=", 10000.0, "/s"),
    ],
)
def test_parse_threshold(expr, metric, op, value, unit):
    threshold = parse_threshold(f"  {expr} ", CLI)
    assert (threshold.metric, threshold.op, threshold.value, threshold.unit) == (
        metric,
        op,
        value,
        unit,
    )
    assert threshold.expression == expr
    assert threshold.origin == CLI


def test_ops_constant():
    assert OPS == (">=", "<=", ">", "<", "==")


@pytest.mark.parametrize(
    "expr, message",
    [
        (
            "throughput>9Gbps!",
            "--mesh-threshold 'throughput>9Gbps!': cannot parse value '9Gbps!'; write it like throughput>=9Gbit/s",
        ),
        (
            "thruput>=1G",
            "--mesh-threshold 'thruput>=1G': unknown metric 'thruput'; did you mean 'throughput'?",
        ),
        (
            "throughput>=5ms",
            "--mesh-threshold 'throughput>=5ms': unit 'ms' is a time; throughput takes a rate such as 9Gbit/s",
        ),
        (
            "jitter<=5Mbit/s",
            "--mesh-threshold 'jitter<=5Mbit/s': unit 'Mbit/s' is a rate; jitter takes a time such as 1ms",
        ),
        (
            "throughput=9G",
            "--mesh-threshold 'throughput=9G': operator '=' is not accepted; use '==' as in throughput==9G",
        ),
        (
            "throughput 9G",
            (
                "--mesh-threshold 'throughput 9G': missing comparison operator (one of >=, <=, >, <, ==); "
                "write it like throughput>=9Gbit/s"
            ),
        ),
        (
            "jitter<=-1ms",
            "--mesh-threshold 'jitter<=-1ms': value '-1ms' is negative; write it like jitter<=1ms",
        ),
        (
            "p99_latency<=nan",
            (
                "--mesh-threshold 'p99_latency<=nan': value 'nan' is not a finite number; "
                "write it like p99_latency<=200us"
            ),
        ),
    ],
)
def test_parse_errors_exact(expr, message):
    with pytest.raises(ThresholdError) as info:
        parse_threshold(expr, CLI)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("", "empty threshold"),
        ("   ", "empty threshold"),
        (">=9G", "missing metric name"),
        ("throughput>=", "missing value after '>='"),
        ("throughput=>9G", "use '>='"),
        ("jitter=<1ms", "use '<='"),
        ("throughput!=9G", "unknown operator '!='"),
        ("throughput<>9G", "unknown operator '<>'"),
        ("throughput>=>9G", "unknown operator '>=>'"),
        ("bogus>=1", "valid metrics: throughput_bps"),
        ("loss<=1ms", "unit 'ms' is a time; loss takes a percentage"),
        ("retransmits<=1Gbit/s", "retransmits takes a plain number"),
        ("transaction_rate>=1Gbit/s", "transaction rate takes a frequency"),
        ("throughput>=inf", "not a finite number"),
        ("throughput>=9G\nretransmits<=1", "cannot parse value"),
        ("throughput>=1e999", "not a finite number"),
    ],
)
def test_parse_errors_are_one_line_and_name_expression(expr, fragment):
    with pytest.raises(ThresholdError) as info:
        parse_threshold(expr, "mark")
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith(f"mark {expr.strip()!r}: ")
    assert isinstance(info.value, UsageError)


def test_non_string_expression():
    with pytest.raises(ThresholdError, match=r"^mark 42: a threshold must be a string"):
        parse_threshold(42, "mark")


def test_threshold_validates_fields():
    with pytest.raises(ValueError):
        Threshold("throughput", ">=", 1.0, "", "x", "o")  # alias, not canonical
    with pytest.raises(ValueError):
        Threshold("throughput_bps", "=", 1.0, "", "x", "o")


# --- checking and messages ---------------------------------------------------


def test_failure_message_exact():
    result = t("throughput>=900Mbit/s").check({"throughput_bps": 812.4e6})
    assert result.passed is False
    assert result.value == 812.4e6
    assert result.message == "throughput 812.4 Mbit/s < 900 Mbit/s (--mesh-threshold)"


@pytest.mark.parametrize(
    "expr, metrics, passed, message",
    [
        (
            "throughput>=900Mbit/s",
            {"throughput_bps": 950e6},
            True,
            "throughput 950 Mbit/s >= 900 Mbit/s (o)",
        ),
        (
            "throughput>=9G",
            {"throughput_bps": 9.4e9},
            True,
            "throughput 9.4 Gbit/s >= 9 Gbit/s (o)",
        ),
        (
            "throughput>=9G",
            {"throughput_bps": 812.4e6},
            False,
            "throughput 0.8124 Gbit/s < 9 Gbit/s (o)",
        ),
        (
            "throughput>=1e9",
            {"throughput_bps": 812.4e6},
            False,
            "throughput 812.4 Mbit/s < 1 Gbit/s (o)",
        ),
        (
            "throughput>=1GB/s",
            {"throughput_bps": 4e9},
            False,
            "throughput 0.5 GB/s < 1 GB/s (o)",
        ),
        (
            "throughput>1G",
            {"throughput_bps": 1e9},
            False,
            "throughput 1 Gbit/s <= 1 Gbit/s (o)",
        ),
        ("retransmits<=100", {"retransmits": 150}, False, "retransmits 150 > 100 (o)"),
        ("retransmits<=100", {"retransmits": 3}, True, "retransmits 3 <= 100 (o)"),
        ("retransmits<100", {"retransmits": 100}, False, "retransmits 100 >= 100 (o)"),
        ("retransmits==0", {"retransmits": 2}, False, "retransmits 2 != 0 (o)"),
        ("retransmits==0", {"retransmits": 0}, True, "retransmits 0 == 0 (o)"),
        ("jitter<=1ms", {"jitter_ms": 1.25}, False, "jitter 1.25 ms > 1 ms (o)"),
        ("jitter<=500us", {"jitter_ms": 0.75}, False, "jitter 750 us > 500 us (o)"),
        ("loss<=0.1%", {"lost_percent": 0.5}, False, "loss 0.5% > 0.1% (o)"),
        ("loss<=0.1", {"lost_percent": 0.05}, True, "loss 0.05% <= 0.1% (o)"),
        (
            "p99_latency<=200us",
            {"latency_p99_us": 250},
            False,
            "p99 latency 250 us > 200 us (o)",
        ),
        (
            "p99_latency<=1ms",
            {"latency_p99_us": 250},
            True,
            "p99 latency 0.25 ms <= 1 ms (o)",
        ),
        (
            "transaction_rate>=10000",
            {"transaction_rate": 9000},
            False,
            "transaction rate 9000/s < 10000/s (o)",
        ),
        (
            "cpu_remote<90",
            {"cpu_remote_percent": 95.5},
            False,
            "remote CPU 95.5% >= 90% (o)",
        ),
    ],
)
def test_check_messages(expr, metrics, passed, message):
    result = parse_threshold(expr, "o").check(metrics)
    assert result.passed is passed
    assert result.message == message


@pytest.mark.parametrize(
    "expr, measured, message",
    [
        (
            "throughput>=900Mbit/s",
            899.99e6,
            "throughput 899.99 Mbit/s < 900 Mbit/s (o)",
        ),
        ("throughput>=1e9", 999.99e6, "throughput 999.99 Mbit/s < 1 Gbit/s (o)"),
        (
            "throughput>900Mbit/s",
            900.001e6,
            "throughput 900.001 Mbit/s > 900 Mbit/s (o)",
        ),
    ],
)
def test_messages_never_contradict_themselves(expr, measured, message):
    assert (
        parse_threshold(expr, "o").check({"throughput_bps": measured}).message
        == message
    )


@pytest.mark.parametrize("op, holds", [(">=", [False, True, True]), (">", [False, False, True]),
                                       ("<=", [True, True, False]), ("<", [True, False, False]),
                                       ("==", [False, True, False])])  # fmt: skip
def test_operators(op, holds):
    threshold = t(f"retransmits{op}10")
    assert [threshold.check({"retransmits": v}).passed for v in (9, 10, 11)] == holds


def test_equality_tolerates_float_rounding():
    assert t("jitter==0.3ms").check({"jitter_ms": 0.1 + 0.2}).passed is True


@pytest.mark.parametrize("metrics", [{}, {"throughput_bps": 1e9}, {"jitter_ms": None}])
def test_not_applicable(metrics):
    result = t("jitter<=1ms").check(metrics)
    assert result.passed is None
    assert result.value is None
    assert result.message == "jitter not measured by this test (--mesh-threshold)"


def test_nan_measurement_fails():
    result = t("throughput>=1G").check({"throughput_bps": math.nan})
    assert result.passed is False
    assert (
        result.message == "throughput measured NaN, not >= 1 Gbit/s (--mesh-threshold)"
    )
    assert result.to_dict()["measured"] is None


def test_to_dict_is_json():
    threshold = t("throughput >= 900 Mbit/s")
    assert threshold.to_dict() == {
        "expression": "throughput >= 900 Mbit/s",
        "metric": "throughput_bps",
        "op": ">=",
        "value": 900e6,
        "unit": "Mbit/s",
        "origin": CLI,
    }
    result = threshold.check({"throughput_bps": 812.4e6})
    data = result.to_dict()
    assert data == dict(
        threshold.to_dict(),
        measured=812.4e6,
        passed=False,
        message="throughput 812.4 Mbit/s < 900 Mbit/s (--mesh-threshold)",
    )
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    not_applicable = t("jitter<=1ms").check({}).to_dict()
    assert (not_applicable["measured"], not_applicable["passed"]) == (None, None)


def test_check_all():
    thresholds = [t("throughput>=1G"), t("jitter<=1ms"), t("retransmits<=10")]
    results = check_all(thresholds, {"throughput_bps": 2e9, "retransmits": 11})
    assert all(isinstance(r, ThresholdResult) for r in results)
    assert [r.threshold for r in results] == thresholds
    assert [r.passed for r in results] == [True, None, False]


# --- data forms --------------------------------------------------------------


def key(thresholds):
    return [(x.metric, x.op, x.value, x.unit, x.origin) for x in thresholds]


def test_parse_thresholds_list_and_string():
    assert key(parse_thresholds(["throughput>=9G", "retransmits<=100"], "mark")) == [
        ("throughput_bps", ">=", 9e9, "Gbit/s", "mark"),
        ("retransmits", "<=", 100.0, "", "mark"),
    ]
    assert key(parse_thresholds("jitter<=1ms", "mark")) == [
        ("jitter_ms", "<=", 1.0, "ms", "mark")
    ]
    assert parse_thresholds(None, "mark") == []
    assert parse_thresholds([], "mark") == []


@pytest.mark.parametrize(
    "data",
    [
        {"throughput": ">= 9Gbit/s", "retransmits": "<=100"},
        {"throughput": [">= 9Gbit/s"], "retransmits": ["<= 100"]},
        {"throughput": {">=": "9Gbit/s"}, "retransmits": {"<=": 100}},
        [{"throughput": ">= 9Gbit/s"}, "retransmits<=100"],
    ],
)
def test_parse_thresholds_mapping_forms(data):
    assert key(parse_thresholds(data, "mark")) == [
        ("throughput_bps", ">=", 9e9, "Gbit/s", "mark"),
        ("retransmits", "<=", 100.0, "", "mark"),
    ]


def test_mapping_expression_text_and_both_bounds():
    both = parse_thresholds({"throughput": {">=": "9Gbit/s", "<=": "10Gbit/s"}}, "mark")
    assert [x.expression for x in both] == [
        "throughput >= 9Gbit/s",
        "throughput <= 10Gbit/s",
    ]


def test_threshold_objects_pass_through():
    existing = t("throughput>=1G")
    assert parse_thresholds([existing, "retransmits<=1"], "measure()")[0] is existing


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"throughput": "9Gbit/s"}, "missing comparison operator"),
        ({"throughput": 9}, "missing comparison operator"),
        ({"throughput": None}, "missing comparison operator"),
        ({"throughput": {"=": "9G"}}, "use '=='"),
        ({"thruput": ">= 9G"}, "did you mean 'throughput'?"),
        ({1: ">= 9G"}, "metric name 1 is not a string"),
        (42, "thresholds must be a list of expressions"),
        ([42], "a threshold must be a string"),
    ],
)
def test_parse_thresholds_errors(data, fragment):
    with pytest.raises(ThresholdError) as info:
        parse_thresholds(data, "mark")
    assert fragment in str(info.value)
    assert str(info.value).startswith("mark")
    assert "\n" not in str(info.value)


# --- merging -----------------------------------------------------------------


def exprs(thresholds):
    return [(x.expression, x.origin) for x in thresholds]


def test_merge_later_layer_replaces_same_side():
    profile = [t("throughput>=5G", "profile"), t("retransmits<=100", "profile")]
    mark = [t("throughput>=8G", "mark")]
    cli = [t("throughput>9G", CLI)]
    assert exprs(merge_thresholds(profile, mark, cli)) == [
        ("throughput>9G", CLI),
        ("retransmits<=100", "profile"),
    ]


def test_merge_other_side_and_other_metric_accumulate():
    profile = [t("throughput>=5G", "profile"), t("throughput<=10G", "profile")]
    cli = [t("throughput>=8G", CLI), t("jitter<=1ms", CLI)]
    assert exprs(merge_thresholds(profile, cli)) == [
        ("throughput>=8G", CLI),
        ("throughput<=10G", "profile"),
        ("jitter<=1ms", CLI),
    ]


def test_merge_equality_replaces_both_sides():
    profile = [
        t("retransmits>=1", "p"),
        t("jitter<=1ms", "p"),
        t("retransmits<=100", "p"),
    ]
    assert exprs(merge_thresholds(profile, [t("retransmits==0", "m")])) == [
        ("retransmits==0", "m"),
        ("jitter<=1ms", "p"),
    ]


def test_merge_bound_replaces_equality():
    merged = merge_thresholds([t("retransmits==0", "p")], [t("retransmits<=5", "m")])
    assert exprs(merged) == [("retransmits<=5", "m")]


def test_merge_same_layer_accumulates():
    layer = [t("throughput>=5G", "p"), t("throughput>=6G", "p")]
    assert exprs(merge_thresholds(layer)) == [
        ("throughput>=5G", "p"),
        ("throughput>=6G", "p"),
    ]
    # ... and a later layer replaces both
    assert exprs(merge_thresholds(layer, [t("throughput>=1G", "c")])) == [
        ("throughput>=1G", "c")
    ]


def test_merge_empty_and_generators():
    assert merge_thresholds() == []
    assert merge_thresholds([], iter([t("jitter<=1ms")])) == [t("jitter<=1ms")]


def test_merge_aliases_are_the_same_metric():
    merged = merge_thresholds(
        [t("throughput_bps>=1e9", "p")], [t("THROUGHPUT>=2G", "c")]
    )
    assert exprs(merged) == [("THROUGHPUT>=2G", "c")]


# --- files -------------------------------------------------------------------


def test_load_list_file_with_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "tcp.yaml").write_text(
        "# TCP expectations\n"
        "- throughput >= 9Gbit/s\n"
        "\n"
        "- retransmits<=100\n"
        "- 'loss <= 0.1%'\n",
        encoding="utf-8",
    )
    loaded = load_threshold_file("suites/tcp.yaml")
    assert key(loaded) == [
        ("throughput_bps", ">=", 9e9, "Gbit/s", "suites/tcp.yaml:2"),
        ("retransmits", "<=", 100.0, "", "suites/tcp.yaml:4"),
        ("lost_percent", "<=", 0.1, "%", "suites/tcp.yaml:5"),
    ]
    assert loaded[0].expression == "throughput >= 9Gbit/s"


def test_load_mapping_file_with_lines(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "thresholds:\n"
        "  throughput: '>= 9Gbit/s'\n"
        "  jitter:\n"
        "    '<=': 1ms\n"
        "  p99_latency:\n"
        "    - '<= 200us'\n"
        "    - '>= 1us'\n"
        "  retransmits: <= 100\n",
        encoding="utf-8",
    )
    loaded = load_threshold_file(path)
    shown = str(path)
    assert key(loaded) == [
        ("throughput_bps", ">=", 9e9, "Gbit/s", f"{shown}:2"),
        ("jitter_ms", "<=", 1.0, "ms", f"{shown}:4"),
        ("latency_p99_us", "<=", 200.0, "us", f"{shown}:6"),
        ("latency_p99_us", ">=", 1.0, "us", f"{shown}:7"),
        ("retransmits", "<=", 100.0, "", f"{shown}:8"),
    ]


def test_yaml_scalars_keep_their_text(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "throughput_bps:\n  '>=': 1e9\nloss:\n  '<=': 0.10\n", encoding="utf-8"
    )
    assert [(x.value, x.expression) for x in load_threshold_file(path)] == [
        (1e9, "throughput_bps >= 1e9"),
        (0.1, "loss <= 0.10"),
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "[]\n"])
def test_load_empty_file(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_threshold_file(path) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "- throughput>=9G\n- thruput>=1G\n",
            ":2 'thruput>=1G': unknown metric 'thruput'; did you mean 'throughput'?",
        ),
        (
            "- throughput>=9G\n\n- jitter<=5G\n",
            ":3 'jitter<=5G': cannot parse value '5G'; write it like jitter<=1ms",
        ),
        (
            "- jitter<=5Gbit/s\n",
            ":1 'jitter<=5Gbit/s': unit 'Gbit/s' is a rate; jitter takes a time such as 1ms",
        ),
        ("throughput: 9G\n", ":1 'throughput 9G': missing comparison operator"),
        (
            "jitter:\n  '=': 1ms\n",
            ":2 'jitter = 1ms': operator '=' is not accepted; use '=='",
        ),
        ("- throughput>=9G\n- [1, 2\n", ":3: invalid YAML"),
        ("throughput: >= 9G\n", ":1: invalid YAML"),
        (
            "throughput: '>= 9G'\nthroughput: '<= 10G'\n",
            ":2: duplicate key 'throughput'",
        ),
        ("just a string\n", ":1: expected a list of thresholds"),
        ("- 1\n- throughput>=9G\n", ":1 '1': missing comparison operator"),
    ],
)
def test_load_file_errors_name_file_and_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ThresholdError) as info:
        load_threshold_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + expected)


def test_load_file_yaml_hint_for_unquoted_operator(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("throughput: >= 9G\n", encoding="utf-8")
    with pytest.raises(
        ThresholdError, match="quote conditions that start with an operator"
    ):
        load_threshold_file(path)


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ThresholdError) as info:
        load_threshold_file(path)
    assert str(info.value).startswith(f"{path}: cannot read threshold file")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("expr, measured_bps, message", [
    ("throughput>=100Tbit/s", 99.99e6, "throughput 99.99 Mbit/s < 100 Tbit/s (cli)"),
    ("throughput>=100Tbit/s", 23.16e9, "throughput 23.16 Gbit/s < 100 Tbit/s (cli)"),
    ("throughput>=1Gbit/s", 950e6, "throughput 0.95 Gbit/s < 1 Gbit/s (cli)"),
])
def test_far_off_rates_are_scaled_on_their_own(expr, measured_bps, message):
    assert parse_threshold(expr, "cli").check({"throughput_bps": measured_bps}).message == message


# -- relative and asymmetry thresholds (judged by check items, tests/verdicts/test_checks.py) -----------

@pytest.mark.parametrize("expr, metric, op, value, unit, reference", [
    ("throughput>=0.8*median", "throughput_bps", ">=", 0.8, "", "median"),
    ("p99_latency <= 2 * median", "latency_p99_us", "<=", 2.0, "", "median"),
    ("throughput >= median", "throughput_bps", ">=", 1.0, "", "median"),
    ("asymmetry<=20%", "", "<=", 20.0, "%", "asymmetry"),
    ("asymmetry(p99_latency) <= 30%", "latency_p99_us", "<=", 30.0, "%", "asymmetry"),
    ("Asymmetry( throughput )<5%", "throughput_bps", "<", 5.0, "%", "asymmetry"),
])
def test_parse_deferred_thresholds(expr, metric, op, value, unit, reference):
    th = t(expr)
    assert (th.metric, th.op, th.value, th.unit, th.reference) == (metric, op, pytest.approx(value), unit, reference)
    assert th.deferred and th.to_dict()["reference"] == reference


@pytest.mark.parametrize("expr, message", [
    ("throughput>=0.8*mean", "--mesh-threshold 'throughput>=0.8*mean': cannot parse value '0.8*mean'; "
                             "a relative threshold is K*median, e.g. throughput>=0.8*median"),
    ("throughput>=-1*median", "--mesh-threshold 'throughput>=-1*median': cannot parse value '-1*median'; "
                              "a relative threshold is K*median, e.g. throughput>=0.8*median"),
    ("asymmetry<=fast", "--mesh-threshold 'asymmetry<=fast': cannot parse value 'fast'; write it like asymmetry<=20%"),
    ("asymmetry<=20ms", "--mesh-threshold 'asymmetry<=20ms': unit 'ms' is a time; asymmetry takes a percentage "
                        "such as 0.1%"),
    ("asymmetry(thruput)<=20%", "--mesh-threshold 'asymmetry(thruput)<=20%': unknown metric 'thruput'; "
                                "did you mean 'throughput'?"),
])
def test_deferred_threshold_errors(expr, message):
    with pytest.raises(ThresholdError) as info:
        t(expr)
    assert str(info.value) == message


def test_deferred_thresholds_are_not_judged_by_the_pair_and_do_not_replace_absolute_ones():
    absolute, relative = t("throughput>=100Mbit/s", "mark"), t("throughput>=0.8*median")
    assert [v.threshold for v in check_all([absolute, relative], {"throughput_bps": 1e9})] == [absolute]
    assert merge_thresholds([absolute], [relative]) == [absolute, relative]
    assert merge_thresholds([relative], [t("throughput>=0.9*median", "mark")]) == [t("throughput>=0.9*median", "mark")]
