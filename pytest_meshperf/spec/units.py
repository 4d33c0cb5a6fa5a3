"""Quantities with units: parse what users write, express canonical values back.

Every metric has a *kind* and a canonical unit (see ``metrics.py``):

============  ==============  ===========================================
kind          canonical unit  accepted units (value then optional unit)
============  ==============  ===========================================
``rate``      ``bit/s``       bits: ``bit/s bits/s bit/sec b/s bps bit b``;
                              bytes: ``B/s Bps byte/s bytes/s byte B``;
                              optional prefix ``k M G T`` (decimal, case
                              tolerated: ``9gbit/s``) or ``Ki Mi Gi Ti``
                              (binary); a prefix alone means bits (``9G``).
                              ``b`` is a bit and ``B`` a byte (8 bits).
``time``      per metric      ``s ms us µs ns`` (and ``sec``, ``msec``,
              (``ms``, ``us``) ``usec``, ``nsec``, spelled-out names)
``percent``   ``%``           ``%``, ``percent``
``count``     (none)          multipliers ``k``/``K``, ``M``, ``G`` only
``frequency`` ``/s``          ``/s``, ``/sec``, ``tps``, with optional
                              multiplier ``k``/``K``, ``M``, ``G``
============  ==============  ===========================================

A bare number is in the canonical unit.  Values must be finite and >= 0.

The unit returned by :func:`parse_quantity` is the user's unit in a normalized
spelling (``9Gbps`` -> ``Gbit/s``, ``1 GByte/s`` -> ``GB/s``, ``µs`` -> ``us``,
``10k/s`` and ``10000tps`` -> ``/s``); it is ``""`` for a bare number and for
counts (a multiplier is notation, not a unit).  :func:`to_unit` accepts any
spelling :func:`parse_quantity` accepts.
"""

from __future__ import annotations

import datetime
import math
import re

from pytest_meshperf.errors import ThresholdError

__all__ = [
    "CANONICAL_UNITS",
    "KINDS",
    "TIME_UNITS",
    "QuantityError",
    "example_value",
    "format_number",
    "format_rate_bps",
    "kind_description",
    "parse_quantity",
    "to_unit",
]

KINDS = ("rate", "count", "time", "percent", "frequency")

#: Canonical unit of each kind; ``time`` has none of its own: each time metric
#: names its canonical unit (``jitter_ms`` -> ``ms``, ``latency_*_us`` -> ``us``).
CANONICAL_UNITS = {"rate": "bit/s", "count": "", "percent": "%", "frequency": "/s"}

TIME_UNITS = ("s", "ms", "us", "ns")
_TIME_EXPONENT = {"s": 0, "ms": -3, "us": -6, "ns": -9}
_TIME_SPELLINGS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "ms": "ms", "msec": "ms", "msecs": "ms", "millisecond": "ms", "milliseconds": "ms",
    "us": "us", "µs": "us", "μs": "us", "usec": "us", "usecs": "us",
    "microsecond": "us", "microseconds": "us",
    "ns": "ns", "nsec": "ns", "nsecs": "ns", "nanosecond": "ns", "nanoseconds": "ns",
}  # fmt: skip

_KIND_DESCRIPTION = {
    "rate": "a rate",
    "count": "a plain number",
    "time": "a time",
    "percent": "a percentage",
    "frequency": "a frequency",
}
_EXAMPLES = {
    "rate": "9Gbit/s",
    "count": "100",
    "percent": "0.1%",
    "frequency": "10000/s",
}
_TIME_EXAMPLES = {"s": "1s", "ms": "1ms", "us": "200us", "ns": "500ns"}

_NUMBER_RE = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>.*)\Z",
    re.DOTALL,
)
_RATE_RE = re.compile(
    r"(?P<prefix>[kmgt])?(?P<binary>i)?(?P<base>bits?|bytes?|b)?(?P<per>/s|/sec|ps)?\Z",
    re.IGNORECASE,
)
_FREQUENCY_RE = re.compile(r"(?P<prefix>[kKMG])?(?P<per>/s|/sec|tps)?\Z", re.IGNORECASE)
_DECIMAL_EXPONENT = {"k": 1, "m": 2, "g": 3, "t": 4}
_PREFIX_SYMBOL = {"k": "k", "m": "M", "g": "G", "t": "T"}
_MULTIPLIERS = {"": 1, "k": 1000, "K": 1000, "M": 10**6, "G": 10**9}

# A conversion is (mul, div): canonical = value * mul / div.  Integers keep
# decimal conversions exact (1ms == 1000us, not 999.9999999999999).
_Conversion = tuple[tuple[int, int], str]


class QuantityError(ThresholdError):
    """A value that cannot be parsed as a quantity of the expected kind.

    ``str(err)`` is ``"<problem>; <hint>"``.  ``kind_mismatch`` is true when the
    value has a valid unit of another kind (``5ms`` for a rate); callers that
    know more context (the threshold parser) may replace the hint otherwise.
    """

    def __init__(self, problem: str, hint: str, kind_mismatch: bool = False):
        super().__init__(f"{problem}; {hint}")
        self.problem = problem
        self.hint = hint
        self.kind_mismatch = kind_mismatch


def _check_kind(kind: str, canonical: str | None) -> str:
    """The canonical unit for ``kind``; ``canonical`` is required for times."""
    if kind == "time":
        if canonical is None:
            return "s"
        if canonical not in _TIME_EXPONENT:
            raise ValueError(
                f"canonical time unit must be one of {TIME_UNITS}, not {canonical!r}"
            )
        return canonical
    if kind not in CANONICAL_UNITS:
        raise ValueError(f"unknown quantity kind {kind!r}; expected one of {KINDS}")
    if canonical is not None and canonical != CANONICAL_UNITS[kind]:
        raise ValueError(
            f"canonical unit of a {kind} is {CANONICAL_UNITS[kind]!r}, not {canonical!r}"
        )
    return CANONICAL_UNITS[kind]


def kind_description(kind: str) -> str:
    """``"a rate"``, ``"a time"``, ... for messages."""
    return _KIND_DESCRIPTION[kind]


def example_value(kind: str, canonical: str | None = None) -> str:
    """A typical value of ``kind`` for hints: ``9Gbit/s``, ``1ms``, ``200us``, ``0.1%``."""
    canon = _check_kind(kind, canonical)
    return _TIME_EXAMPLES[canon] if kind == "time" else _EXAMPLES[kind]


# --- unit recognizers: unit text -> ((mul, div), normalized) or None ----------


def _rate_unit(unit: str, require_base: bool = False) -> _Conversion | None:
    if unit == "":
        return None if require_base else ((1, 1), "")
    m = _RATE_RE.match(unit)
    if not m:
        return None
    prefix, binary, base, per = m.group("prefix", "binary", "base", "per")
    if binary and not prefix:
        return None
    if base is None and (per or require_base):  # "k/s" is a frequency, not a rate
        return None
    if per and per.lower() == "ps" and base not in ("b", "B"):  # bps, Bps only
        return None
    is_byte = base is not None and (base == "B" or base.lower().startswith("byte"))
    if prefix is None:
        factor, symbol = 1, ""
    elif binary:
        factor = 1024 ** _DECIMAL_EXPONENT[prefix.lower()]
        symbol = prefix.upper() + "i"
    else:
        factor = 1000 ** _DECIMAL_EXPONENT[prefix.lower()]
        symbol = _PREFIX_SYMBOL[prefix.lower()]
    if is_byte:
        factor *= 8
    return (factor, 1), symbol + ("B/s" if is_byte else "bit/s")


def _time_unit(
    unit: str, canonical: str, require_unit: bool = False
) -> _Conversion | None:
    if unit == "":
        return None if require_unit else ((1, 1), "")
    symbol = _TIME_SPELLINGS.get(unit.lower()) or _TIME_SPELLINGS.get(unit)
    if symbol is None:
        return None
    shift = _TIME_EXPONENT[symbol] - _TIME_EXPONENT[canonical]
    conversion = (10**shift, 1) if shift >= 0 else (1, 10**-shift)
    return conversion, symbol


def _percent_unit(unit: str, require_unit: bool = False) -> _Conversion | None:
    if unit == "":
        return None if require_unit else ((1, 1), "")
    if unit == "%" or unit.lower() == "percent":
        return (1, 1), "%"
    return None


def _count_unit(unit: str) -> _Conversion | None:
    if unit in _MULTIPLIERS:
        return (_MULTIPLIERS[unit], 1), ""
    return None


def _frequency_unit(unit: str, require_unit: bool = False) -> _Conversion | None:
    m = _FREQUENCY_RE.match(unit)
    if not m:
        return None
    prefix, per = m.group("prefix", "per")
    if (
        prefix is not None and prefix not in _MULTIPLIERS
    ):  # "m"/"g": no case tolerance here
        return None
    if require_unit and not per:
        return None
    return (_MULTIPLIERS[prefix or ""], 1), ("/s" if per else "")


def _lookup(unit: str, kind: str, canonical: str) -> _Conversion | None:
    if kind == "rate":
        return _rate_unit(unit)
    if kind == "time":
        return _time_unit(unit, canonical)
    if kind == "percent":
        return _percent_unit(unit)
    if kind == "count":
        return _count_unit(unit)
    return _frequency_unit(unit)


def _classify(unit: str) -> str | None:
    """The kind of a unit that unambiguously belongs to one (for wrong-kind errors)."""
    if _time_unit(unit, "s", require_unit=True):
        return "time"
    if _percent_unit(unit, require_unit=True):
        return "percent"
    if _rate_unit(unit, require_base=True):
        return "rate"
    if _frequency_unit(unit, require_unit=True):
        return "frequency"
    return None


# --- public API --------------------------------------------------------------


def parse_quantity(
    text: str | float,
    kind: str,
    canonical: str | None = None,
    *,
    label: str | None = None,
) -> tuple[float, str]:
    """Parse ``text`` as a quantity of ``kind``.

    Returns ``(value in the canonical unit, unit as written in normalized
    spelling)``; the unit is ``""`` for a bare number.  ``canonical`` is the
    canonical unit: required in practice for ``kind="time"`` (``"ms"`` or
    ``"us"``; default ``"s"``), optional and checked for the other kinds.
    ``label`` names the metric in messages (``"throughput"``).

    >>> parse_quantity("9Gbps", "rate")
    (9000000000.0, 'Gbit/s')
    >>> parse_quantity("1ms", "time", canonical="us")
    (1000.0, 'ms')

    Raises :class:`QuantityError` (a ``ThresholdError``) with a one-line message.
    """
    canon = _check_kind(kind, canonical)
    hint = f"{label or 'this metric'} takes {_KIND_DESCRIPTION[kind]} such as {example_value(kind, canon)}"
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise QuantityError(f"value {text!r} is not a number", hint)
    source = text.strip() if isinstance(text, str) else repr(text)
    if not source:
        raise QuantityError("missing value", hint)
    m = _NUMBER_RE.match(source)
    if not m:
        if source.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise QuantityError(f"value {source!r} is not a finite number", hint)
        raise QuantityError(f"cannot parse value {source!r}", hint)
    number = float(m.group("num"))
    unit = m.group("unit")
    conversion = _lookup(unit, kind, canon)
    if conversion is None:
        other = _classify(unit)
        if other is not None and other != kind:
            raise QuantityError(
                f"unit {unit!r} is {_KIND_DESCRIPTION[other]}", hint, kind_mismatch=True
            )
        raise QuantityError(f"cannot parse value {source!r}", hint)
    if number < 0:
        raise QuantityError(f"value {source!r} is negative", hint)
    (mul, div), normalized = conversion
    value = number * mul / div + 0.0  # + 0.0 turns -0.0 into 0.0
    if not math.isfinite(value):
        raise QuantityError(f"value {source!r} is not a finite number", hint)
    return value, normalized


def to_unit(
    value_canonical: float, unit: str, kind: str, canonical: str | None = None
) -> float:
    """Express a canonical value in ``unit`` (any spelling ``parse_quantity`` accepts).

    ``to_unit(812.4e6, "Mbit/s", "rate") == 812.4``;
    ``to_unit(1500.0, "ms", "time", canonical="us") == 1.5``.  ``""`` is the
    canonical unit.  An unknown unit or one of another kind is a ThresholdError.
    """
    canon = _check_kind(kind, canonical)
    conversion = _lookup(unit.strip(), kind, canon)
    if conversion is None:
        raise ThresholdError(
            f"cannot express {_KIND_DESCRIPTION[kind]} in unit {unit!r}; "
            f"use a unit such as {example_value(kind, canon)}"
        )
    (mul, div), _ = conversion
    return value_canonical * div / mul


def format_number(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, trailing zeros trimmed, no exponent.

    Integer digits are never dropped: ``format_number(12345.6) == "12346"``.
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - exponent)
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


_RATE_PREFIXES = ("", "k", "M", "G", "T")


def format_rate_bps(value: float, digits: int = 4) -> str:
    """A bit rate auto-scaled to bit/s, kbit/s, Mbit/s, Gbit/s or Tbit/s: ``"812.4 Mbit/s"``."""
    if not math.isfinite(value):
        return f"{value} bit/s"
    index = 0
    while index < len(_RATE_PREFIXES) - 1 and abs(value) >= 1000 ** (index + 1):
        index += 1
    text = format_number(value / 1000**index, digits)
    if abs(float(text)) >= 1000 and index < len(_RATE_PREFIXES) - 1:  # 999.99 -> "1000"
        index += 1
        text = format_number(value / 1000**index, digits)
    return f"{text} {_RATE_PREFIXES[index]}bit/s"


def iso(epoch: float | None) -> str | None:
    """A moment as results write it: UTC, ISO 8601 with microseconds (``2026-12-01T21:46:26.000000Z``)."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
