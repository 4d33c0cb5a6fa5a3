"""Units and the metric contract: parsing, conversion, formatting."""

import pytest

from pytest_meshperf.errors import ThresholdError
from pytest_meshperf.spec.metrics import METRICS, Metric, format_value, resolve_metric
from pytest_meshperf.spec.units import QuantityError, format_number, format_rate_bps, parse_quantity, to_unit


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("9Gbit/s", 9e9, "Gbit/s"),
        ("9 Gbit/s", 9e9, "Gbit/s"),
        ("  9 Gbit/s  ", 9e9, "Gbit/s"),
        ("9Gbps", 9e9, "Gbit/s"),
        ("9Gb/s", 9e9, "Gbit/s"),
        ("9Gbits/s", 9e9, "Gbit/s"),
        ("9Gbit", 9e9, "Gbit/s"),
        ("9G", 9e9, "Gbit/s"),
        ("9gbit/s", 9e9, "Gbit/s"),
        ("9GBit/s", 9e9, "Gbit/s"),  # "bit" spelled out is a bit whatever its case
        ("900Mbit/s", 900e6, "Mbit/s"),
        ("900mbps", 900e6, "Mbit/s"),
        ("100Tbit/s", 100e12, "Tbit/s"),
        ("10kbit/s", 10e3, "kbit/s"),
        ("10Kbit/s", 10e3, "kbit/s"),
        ("10bit/s", 10.0, "bit/s"),
        ("10bps", 10.0, "bit/s"),
        ("1.5e9", 1.5e9, ""),
        ("1500000000", 1.5e9, ""),
        ("0", 0.0, ""),
        (".5G", 0.5e9, "Gbit/s"),
        (1e9, 1e9, ""),
        (100, 100.0, ""),
    ],
)
def test_rate_bits(text, value, unit):
    assert parse_quantity(text, "rate") == (value, unit)


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("1GB/s", 8e9, "GB/s"),
        ("1GBps", 8e9, "GB/s"),
        ("1 GByte/s", 8e9, "GB/s"),
        ("1 Gbytes/s", 8e9, "GB/s"),
        ("1gB/s", 8e9, "GB/s"),
        ("125MB/s", 1e9, "MB/s"),
        ("1B/s", 8.0, "B/s"),
        ("1 byte/s", 8.0, "B/s"),
    ],
)
def test_rate_bytes_are_eight_bits(text, value, unit):
    assert parse_quantity(text, "rate") == (value, unit)


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("1GiB/s", 8 * 2**30, "GiB/s"),
        ("1Gibit/s", 2**30, "Gibit/s"),
        ("1Gib/s", 2**30, "Gibit/s"),
        ("2KiB/s", 2 * 8 * 1024, "KiB/s"),
        ("1kibit/s", 1024, "Kibit/s"),
        ("1MiB/s", 8 * 2**20, "MiB/s"),
        ("1TiB/s", 8 * 2**40, "TiB/s"),
        ("1Gi", 2**30, "Gibit/s"),
    ],
)
def test_rate_binary_prefixes(text, value, unit):
    assert parse_quantity(text, "rate") == (float(value), unit)


def test_bits_and_bytes_differ():
    assert parse_quantity("1Gb/s", "rate")[0] * 8 == parse_quantity("1GB/s", "rate")[0]
    assert parse_quantity("1Gbps", "rate")[0] * 8 == parse_quantity("1GBps", "rate")[0]


@pytest.mark.parametrize(
    "text, canonical, value, unit",
    [
        ("1ms", "us", 1000.0, "ms"),
        ("1 ms", "us", 1000.0, "ms"),
        ("200us", "us", 200.0, "us"),
        ("200µs", "us", 200.0, "us"),  # micro sign U+00B5
        ("200μs", "us", 200.0, "us"),  # Greek mu U+03BC
        ("200usec", "us", 200.0, "us"),
        ("1s", "us", 1e6, "s"),
        ("500ns", "us", 0.5, "ns"),
        ("200", "us", 200.0, ""),
        ("1ms", "ms", 1.0, "ms"),
        ("200us", "ms", 0.2, "us"),
        ("1.5s", "ms", 1500.0, "s"),
        ("3msec", "ms", 3.0, "ms"),
        ("1MS", "ms", 1.0, "ms"),
        ("0.25", "ms", 0.25, ""),
        ("2", None, 2.0, ""),  # default canonical time unit: seconds
    ],
)
def test_time(text, canonical, value, unit):
    assert parse_quantity(text, "time", canonical=canonical) == (value, unit)


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("0.1%", 0.1, "%"),
        ("0.1 %", 0.1, "%"),
        ("0.1", 0.1, ""),
        ("5percent", 5.0, "%"),
        ("150%", 150.0, "%"),
    ],
)
def test_percent(text, value, unit):
    assert parse_quantity(text, "percent") == (value, unit)


@pytest.mark.parametrize(
    "text, value",
    [
        ("100", 100.0),
        ("0", 0.0),
        ("1e3", 1000.0),
        ("1k", 1000.0),
        ("1K", 1000.0),
        ("2M", 2e6),
        ("1G", 1e9),
    ],
)
def test_count(text, value):
    assert parse_quantity(text, "count") == (value, "")


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("10000", 10000.0, ""),
        ("10k", 10000.0, ""),
        ("10000/s", 10000.0, "/s"),
        ("10k/s", 10000.0, "/s"),
        ("10K/s", 10000.0, "/s"),
        ("10000tps", 10000.0, "/s"),
        ("10000 TPS", 10000.0, "/s"),
        ("10000/sec", 10000.0, "/s"),
    ],
)
def test_frequency(text, value, unit):
    assert parse_quantity(text, "frequency") == (value, unit)


@pytest.mark.parametrize(
    "text, kind, canonical, message",
    [
        (
            "5ms",
            "rate",
            None,
            "unit 'ms' is a time; throughput takes a rate such as 9Gbit/s",
        ),
        (
            "5%",
            "rate",
            None,
            "unit '%' is a percentage; throughput takes a rate such as 9Gbit/s",
        ),
        (
            "10k/s",
            "rate",
            None,
            "unit 'k/s' is a frequency; throughput takes a rate such as 9Gbit/s",
        ),
        (
            "1Gbit/s",
            "time",
            "ms",
            "unit 'Gbit/s' is a rate; throughput takes a time such as 1ms",
        ),
        (
            "1%",
            "time",
            "us",
            "unit '%' is a percentage; throughput takes a time such as 200us",
        ),
        (
            "1ms",
            "percent",
            None,
            "unit 'ms' is a time; throughput takes a percentage such as 0.1%",
        ),
        (
            "1GB/s",
            "count",
            None,
            "unit 'GB/s' is a rate; throughput takes a plain number such as 100",
        ),
        (
            "1/s",
            "count",
            None,
            "unit '/s' is a frequency; throughput takes a plain number such as 100",
        ),
        (
            "1Mbit/s",
            "frequency",
            None,
            "unit 'Mbit/s' is a rate; throughput takes a frequency such as 10000/s",
        ),
    ],
)
def test_wrong_kind_unit(text, kind, canonical, message):
    with pytest.raises(QuantityError) as info:
        parse_quantity(text, kind, canonical, label="throughput")
    assert str(info.value) == message
    assert info.value.kind_mismatch
    assert isinstance(info.value, ThresholdError)


@pytest.mark.parametrize(
    "text, kind, problem",
    [
        ("9Gbps!", "rate", "cannot parse value '9Gbps!'"),
        ("Gbit/s", "rate", "cannot parse value 'Gbit/s'"),
        ("9 G bit/s", "rate", "cannot parse value '9 G bit/s'"),
        ("9Xbit/s", "rate", "cannot parse value '9Xbit/s'"),
        ("9/s", "rate", "unit '/s' is a frequency"),
        ("1m", "count", "cannot parse value '1m'"),
        ("1 packets", "count", "cannot parse value '1 packets'"),
        ("1min", "time", "cannot parse value '1min'"),
        ("", "rate", "missing value"),
        ("   ", "percent", "missing value"),
        ("-5", "rate", "value '-5' is negative"),
        ("-1ms", "time", "value '-1ms' is negative"),
        ("nan", "rate", "value 'nan' is not a finite number"),
        ("inf", "count", "value 'inf' is not a finite number"),
        ("-Infinity", "percent", "value '-Infinity' is not a finite number"),
        ("1e999", "rate", "value '1e999' is not a finite number"),
        (float("nan"), "rate", "value 'nan' is not a finite number"),
        (True, "count", "value True is not a number"),
    ],
)
def test_invalid_values(text, kind, problem):
    with pytest.raises(QuantityError) as info:
        parse_quantity(text, kind, "ms" if kind == "time" else None, label="m")
    assert info.value.problem == problem
    assert "\n" not in str(info.value)


def test_negative_zero_is_zero():
    value, _ = parse_quantity("-0", "count")
    assert value == 0.0 and str(value) == "0.0"


def test_canonical_is_checked():
    with pytest.raises(ValueError):
        parse_quantity("1", "time", canonical="min")
    with pytest.raises(ValueError):
        parse_quantity("1", "rate", canonical="B/s")
    with pytest.raises(ValueError):
        parse_quantity("1", "weight")
    assert parse_quantity("1", "rate", canonical="bit/s") == (1.0, "")


@pytest.mark.parametrize(
    "value, unit, kind, canonical, expected",
    [
        (812.4e6, "Mbit/s", "rate", None, 812.4),
        (8e9, "GB/s", "rate", None, 1.0),
        (8 * 2**30, "GiB/s", "rate", None, 1.0),
        (9e9, "Gbps", "rate", None, 9.0),
        (5.0, "", "rate", None, 5.0),
        (1500.0, "ms", "time", "us", 1.5),
        (0.2, "us", "time", "ms", 200.0),
        (0.2, "µs", "time", "ms", 200.0),
        (0.1, "%", "percent", None, 0.1),
        (10000.0, "/s", "frequency", None, 10000.0),
        (3000.0, "k", "count", None, 3.0),
    ],
)
def test_to_unit(value, unit, kind, canonical, expected):
    assert to_unit(value, unit, kind, canonical) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "text, number",
    [("9Gbit/s", 9), ("1GiB/s", 1), ("125 MB/s", 125), ("3kbps", 3), ("1.5e9", 1.5e9)],
)
def test_to_unit_inverts_parse_quantity(text, number):
    value, unit = parse_quantity(text, "rate")
    assert to_unit(value, unit, "rate") == pytest.approx(number, rel=1e-12)


@pytest.mark.parametrize(
    "unit, kind", [("ms", "rate"), ("Gbit/s", "time"), ("bogus", "percent")]
)
def test_to_unit_rejects_foreign_units(unit, kind):
    with pytest.raises(ThresholdError) as info:
        to_unit(1.0, unit, kind, "ms" if kind == "time" else None)
    assert "\n" not in str(info.value) and repr(unit) in str(info.value)


@pytest.mark.parametrize(
    "value, text",
    [
        (812.4, "812.4"),
        (9.5, "9.5"),
        (0.1, "0.1"),
        (12.0, "12"),
        (0.0, "0"),
        (-0.0, "0"),
        (1.23456, "1.235"),
        (9.99996, "10"),
        (0.000123456, "0.0001235"),
        (12345.6, "12346"),
        (-2.5, "-2.5"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0 bit/s"),
        (999, "999 bit/s"),
        (1000, "1 kbit/s"),
        (812.4e6, "812.4 Mbit/s"),
        (9.5e9, "9.5 Gbit/s"),
        (999.99e6, "1 Gbit/s"),  # rounding carries into the next prefix
        (1.23456e12, "1.235 Tbit/s"),
        (5e15, "5000 Tbit/s"),
    ],
)
def test_format_rate_bps(value, text):
    assert format_rate_bps(value) == text


# --- metrics contract --------------------------------------------------------

CONTRACT = {
    "throughput_bps": ("rate", "bit/s", True),
    "throughput_reverse_bps": ("rate", "bit/s", True),
    "retransmits": ("count", "", False),
    "jitter_ms": ("time", "ms", False),
    "lost_packets": ("count", "", False),
    "packets": ("count", "", True),
    "lost_percent": ("percent", "%", False),
    "cpu_local_percent": ("percent", "%", False),
    "cpu_remote_percent": ("percent", "%", False),
    "latency_mean_us": ("time", "us", False),
    "latency_p50_us": ("time", "us", False),
    "latency_p90_us": ("time", "us", False),
    "latency_p99_us": ("time", "us", False),
    "transaction_rate": ("frequency", "/s", True),
}


def test_metric_contract():
    assert {
        name: (m.kind, m.unit, m.higher_is_better) for name, m in METRICS.items()
    } == CONTRACT
    for name, metric in METRICS.items():
        assert isinstance(metric, Metric) and metric.name == name and metric.label


def test_metrics_mapping_is_read_only():
    with pytest.raises(TypeError):
        METRICS["x"] = METRICS["retransmits"]  # type: ignore[index]


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("throughput", "throughput_bps"),
        ("THROUGHPUT", "throughput_bps"),
        ("throughput_bps", "throughput_bps"),
        ("reverse-throughput", "throughput_reverse_bps"),
        ("retransmits", "retransmits"),
        ("jitter", "jitter_ms"),
        ("loss", "lost_percent"),
        ("lost", "lost_percent"),
        ("cpu_local", "cpu_local_percent"),
        ("cpu_remote", "cpu_remote_percent"),
        ("mean_latency", "latency_mean_us"),
        ("p50_latency", "latency_p50_us"),
        ("p90_latency", "latency_p90_us"),
        ("p99_latency", "latency_p99_us"),
        ("latency_p99", "latency_p99_us"),
        ("p99 latency", "latency_p99_us"),
        (" P99-Latency ", "latency_p99_us"),
        ("transaction_rate", "transaction_rate"),
        ("tps", "transaction_rate"),
    ],
)
def test_resolve_metric(name, canonical):
    assert resolve_metric(name) is METRICS[canonical]


@pytest.mark.parametrize(
    "name, message",
    [
        ("thruput", "unknown metric 'thruput'; did you mean 'throughput'?"),
        ("jiter", "unknown metric 'jiter'; did you mean 'jitter'?"),
        ("p99_latncy", "unknown metric 'p99_latncy'; did you mean 'p99_latency'?"),
    ],
)
def test_resolve_metric_suggests(name, message):
    with pytest.raises(ThresholdError) as info:
        resolve_metric(name)
    assert str(info.value) == message


@pytest.mark.parametrize("name", ["zzz", "", "   "])
def test_resolve_metric_lists_valid_names(name):
    with pytest.raises(ThresholdError) as info:
        resolve_metric(name)
    message = str(info.value)
    assert "\n" not in message
    assert all(canonical in message for canonical in METRICS)


@pytest.mark.parametrize(
    "metric, value, unit, text",
    [
        ("throughput_bps", 812.4e6, "Mbit/s", "812.4 Mbit/s"),
        ("throughput_bps", 812.4e6, None, "812.4 Mbit/s"),
        ("throughput", 9.5e9, None, "9.5 Gbit/s"),
        ("throughput_bps", 9.5e9, "Gbit/s", "9.5 Gbit/s"),
        ("throughput_bps", 9.5e9, "Mbit/s", "9500 Mbit/s"),
        ("throughput_bps", 8e9, "GB/s", "1 GB/s"),
        ("throughput_bps", 9.5e9, "", "9.5 Gbit/s"),
        ("lost_percent", 0.1, None, "0.1%"),
        ("lost_percent", 0.1, "%", "0.1%"),
        ("jitter_ms", 12.0, None, "12 ms"),
        ("jitter_ms", 0.5, "us", "500 us"),
        ("latency_p99_us", 200.0, None, "200 us"),
        ("latency_p99_us", 1500.0, "ms", "1.5 ms"),
        ("retransmits", 12.0, None, "12"),
        ("retransmits", 12.5, None, "12.5"),
        ("transaction_rate", 12345.67, None, "12346/s"),
        ("transaction_rate", 9000.0, "/s", "9000/s"),
    ],
)
def test_format_value(metric, value, unit, text):
    assert format_value(metric, value, unit) == text


def test_format_value_accepts_metric_objects_and_digits():
    assert format_value(METRICS["throughput_bps"], 899.99e6, "Mbit/s") == "900 Mbit/s"
    assert (
        format_value(METRICS["throughput_bps"], 899.99e6, "Mbit/s", digits=5)
        == "899.99 Mbit/s"
    )
