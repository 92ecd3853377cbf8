"""Protocol lines are formatted exactly as Dynatrace documents them, and nothing malformed gets out."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from ingest_server import parse_line

from monitoring_lib.dynatrace import protocol as p

TS = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TS_MS = 1772366400000
DIMS = {"endpoint_id": "ep-1", "project": "claims", "model": "gbm", "model_version": "3"}


def test_gauge_line_is_exact() -> None:
    line = p.format_gauge("mlmon.drift.general", 0.25, DIMS, TS)
    assert line is not None
    assert line.line == (
        'mlmon.drift.general,endpoint_id="ep-1",model="gbm",model_version="3",project="claims" '
        f"gauge,0.25 {TS_MS}"
    )
    assert line.timestamp_ms == TS_MS
    assert line.series_key == line.line.split(" ")[0]


def test_summary_and_count_payloads() -> None:
    summary = p.format_summary("mlmon.latency", min=1, max=9.5, sum=30, count=4, dimensions=None, timestamp=TS)
    assert summary is not None and summary.line == f"mlmon.latency gauge,min=1,max=9.5,sum=30,count=4 {TS_MS}"
    count = p.format_count_delta("mlmon.errors.count", 7.0, {"endpoint_id": "e"}, TS)
    assert count is not None and count.line == f'mlmon.errors.count,endpoint_id="e" count,delta=7 {TS_MS}'
    with pytest.raises(ValueError, match="min"):
        p.format_summary("mlmon.latency", min=5, max=1, sum=6, count=2, dimensions=None, timestamp=TS)
    with pytest.raises(ValueError, match="count"):
        p.format_summary("mlmon.latency", min=1, max=5, sum=6, count=1.5, dimensions=None, timestamp=TS)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_never_formatted(bad: float) -> None:
    assert p.format_gauge("mlmon.x.y", bad, DIMS, TS) is None
    assert p.format_count_delta("mlmon.x.y", bad, DIMS, TS) is None
    assert p.format_summary("mlmon.x.y", min=0, max=1, sum=bad, count=1, dimensions=DIMS, timestamp=TS) is None


def test_numbers_never_use_exponent_notation() -> None:
    assert p.format_number(1e-7) == "0.0000001"
    assert p.format_number(1e20) == "100000000000000000000"
    assert p.format_number(-2.5) == "-2.5"
    assert p.format_number(3.0) == "3"
    assert p.format_number(True) == "1"


@pytest.mark.parametrize(
    "key",
    ["ab", "dt.mlmon.x", "DT.x.y", "1mlmon.x", "-mlmon.x", "mlmon..x", "mlmon.-x", "mlmon.x y", "mlmon.x/y",
     "m" * 256],
)
def test_invalid_metric_keys_raise(key: str) -> None:
    with pytest.raises(ValueError):
        p.validate_metric_key(key)


@pytest.mark.parametrize("key", ["abc", "mlmon.drift.general", "_x.9lives", "a-b.c_d", "m" * 255])
def test_valid_metric_keys(key: str) -> None:
    assert p.validate_metric_key(key) == key


def test_metric_key_joins_prefix_and_key_section_cleans_names() -> None:
    assert p.metric_key("mlmon", "performance", p.key_section("R2 score")) == "mlmon.performance.R2_score"
    with pytest.raises(ValueError):
        p.key_section("***")


def test_dimension_keys_are_normalised() -> None:
    assert p.normalize_dimension_key("Model Version") == "model_version"
    assert p.normalize_dimension_key("k8s.Pod:name") == "k8s.pod:name"
    assert p.normalize_dimension_key("9lives") == "lives"
    with pytest.raises(ValueError):
        p.normalize_dimension_key("123")
    with pytest.raises(ValueError):
        p.normalize_dimension_key("dt.entity.host")


def test_dimension_values_are_quoted_escaped_and_single_line() -> None:
    line = p.format_gauge("mlmon.x.y", 1, {"feature": 'a "b" \\c\nd', "empty": "", "none": None}, TS)
    assert line is not None
    assert line.line == f'mlmon.x.y,feature="a \\"b\\" \\\\c d" gauge,1 {TS_MS}'
    assert "\n" not in line.line
    parsed = parse_line(line.line)
    assert parsed.dimensions == {"feature": 'a "b" \\c d'}
    long_value = p.format_gauge("mlmon.x.y", 1, {"f": "v" * 400}, TS)
    assert long_value is not None and len(parse_line(long_value.line).dimensions["f"]) == 250


def test_at_most_50_dimensions_and_collisions_rejected() -> None:
    fifty = {f"d{i}": "v" for i in range(50)}
    assert p.format_gauge("mlmon.x.y", 1, fifty, TS) is not None
    with pytest.raises(ValueError, match="at most 50"):
        p.format_gauge("mlmon.x.y", 1, {**fifty, "d50": "v"}, TS)
    with pytest.raises(ValueError, match="collides"):
        p.normalize_dimensions({"Model": "a", "model": "b"})


def test_series_key_ignores_value_and_time_and_sorts_dimensions() -> None:
    a = p.format_gauge("mlmon.x.y", 1, {"b": "2", "a": "1"}, TS)
    b = p.format_gauge("mlmon.x.y", 2, [("a", "1"), ("b", "2")], 1)
    assert a is not None and b is not None
    assert a.series_key == b.series_key == p.series_key("mlmon.x.y", {"a": "1", "b": "2"})
    assert a.series_key == 'mlmon.x.y,a="1",b="2"'


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        p.format_gauge("mlmon.x.y", 1, None, datetime(2026, 1, 1))


def test_every_formatted_line_parses_with_an_independent_grammar() -> None:
    lines = [
        p.format_gauge("mlmon.a.b", -0.000001, DIMS, TS),
        p.format_summary("mlmon.a.c", min=0.1, max=2, sum=5.5, count=3, dimensions=DIMS, timestamp=TS),
        p.format_count_delta("mlmon.a.d", 12, {**DIMS, "feature": "x,y=z w"}, TS),
    ]
    for line in lines:
        assert line is not None
        parsed = parse_line(line.line)
        assert parsed.key == line.key and parsed.timestamp_ms == TS_MS
    assert parse_line(lines[2].line).dimensions["feature"] == "x,y=z w"
