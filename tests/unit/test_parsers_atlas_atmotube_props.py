"""Atlas and Atmotube parsers under random and malformed payloads, plus round trips and window planning.

Parsers may only succeed or raise `MalformedResponse` (Atmotube's `status != 0` answer is `Rejected`);
the incremental stream readers must give the same result however the body is chunked.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.clients import atlas_streams as streams
from bot.clients import atlas_wire as aw
from bot.clients import atmotube as at
from bot.clients.atlas_wire import AtlasRow
from bot.errors import MalformedResponse, Rejected

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["2026-11-20T11:59:00.000Z", "2026-11-20T11:59:00+02:00", "1.5", "NaN", "-Infinity",
                     "1e999999", "", "9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00-05:00",
                     "2026-02-30T00:00:00Z", "AA:BB:CC:DD:EE:FF"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=25,
)
FAST = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])

ATLAS_PARSERS = [aw.parse_dataset, aw.parse_column, aw.parse_tag, aw.parse_access, aw.parse_row,
                 aw.parse_flat_row]
ATLAS_KEYS = [aw.F_ID, aw.F_NAME, aw.F_DESCRIPTION, aw.F_METADATA, aw.F_COLUMNS, aw.F_CREATED, aw.F_DTYPE,
              aw.F_IS_PUBLIC, aw.F_HAS_ACCESS, aw.F_IS_OWNER, aw.F_MATCHING_TAGS, aw.F_TIMESTAMP, aw.F_VALUES,
              aw.F_COUNT, aw.F_NEXT, aw.F_RESULTS]
ATMOTUBE_KEYS = [at.F_TIME, at.F_COORDS, *at.MEASUREMENTS, at.F_STATUS, at.F_DATA, at.F_ITEMS, at.F_TOTAL]


def _typed(fn: Any, *args: Any, allowed: tuple[type[Exception], ...] = (MalformedResponse,)) -> Any:
    try:
        return fn(*args)
    except allowed as exc:
        assert getattr(exc, "service", None) in (aw.SERVICE, at.SERVICE)
        return None


def _objects_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that use the real field names, with random values: they get past the first checks."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))


# --------------------------------------------------------------------------------------------- Atlas


@FAST
@given(st.one_of(json_values, _objects_with(ATLAS_KEYS)))
def test_atlas_parsers_raise_only_malformed(data: Any) -> None:
    for parse in ATLAS_PARSERS:
        _typed(parse, data)
    for item in ATLAS_PARSERS:
        _typed(aw.parse_page, data, item)
        _typed(aw.parse_page, {aw.F_RESULTS: [data], aw.F_COUNT: 1}, item)
    assert isinstance(aw.error_message(data, 400), str)
    assert 0 <= aw.parse_inserted(data, 5) <= 5
    _typed(streams.decode_event, "data", json.dumps(data))


@FAST
@given(st.lists(st.text(max_size=40), max_size=20))
def test_sse_parser_and_csv_reader_take_any_lines(lines: list[str]) -> None:
    sse = streams.SseParser()
    csv_reader = streams.CsvRecordReader()
    for line in lines:
        _typed(sse.feed, line)
        _typed(csv_reader.feed_line, line)
    _typed(csv_reader.close)


@FAST
@given(st.text(max_size=200), st.integers(min_value=1, max_value=17))
def test_json_array_reader_takes_any_text(text: str, step: int) -> None:
    reader = streams.JsonArrayReader()
    try:
        for i in range(0, len(text), step):
            list(reader.feed(text[i : i + step]))
        reader.close()
    except MalformedResponse:
        pass


rows_strategy = st.lists(
    st.builds(
        lambda minutes, us, values: AtlasRow(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes,
                                                                                           microseconds=us), values),
        st.integers(0, 10**6), st.integers(0, 999_999),
        st.dictionaries(st.sampled_from(["price", "n", "note", "flag"]),
                        st.one_of(st.integers(-(10**9), 10**9), st.text(max_size=15).filter(lambda s: s != ""),
                                  st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=32)),
                        max_size=4),
    ),
    max_size=12,
)


@FAST
@given(rows_strategy, st.integers(min_value=1, max_value=50))
def test_json_download_round_trips_however_it_is_chunked(rows: list[AtlasRow], step: int) -> None:
    body = json.dumps([aw.wire_row(r) for r in rows], separators=(",", ":"))
    reader = streams.JsonArrayReader()
    out: list[AtlasRow] = []
    for i in range(0, len(body), step):
        out.extend(aw.parse_row(o) for o in reader.feed(body[i : i + step]))
    reader.close()
    assert out == [AtlasRow(r.timestamp, aw.exact_values(r.values)) for r in rows]  # floats read back exact


def _csv_body(rows: list[AtlasRow], keys: list[str]) -> str:
    """What the Atlas simulator writes: JSON spelling for non-strings, text as is, missing as empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["timestamp", *keys])
    for r in rows:
        writer.writerow([aw.wire_time(r.timestamp),
                         *("" if k not in r.values else r.values[k] if isinstance(r.values[k], str)
                           else json.dumps(r.values[k]) for k in keys)])
    return buf.getvalue()


@FAST
@given(rows_strategy)
def test_csv_download_round_trips_numbers_and_missing_cells(rows: list[AtlasRow]) -> None:
    numeric = [AtlasRow(r.timestamp, {k: v for k, v in r.values.items()
                                      if isinstance(v, int | float) and not isinstance(v, bool)}) for r in rows]
    reader = streams.CsvRecordReader()
    out = [row for line in _csv_body(numeric, ["price", "n", "note", "flag"]).split("\n")
           if (row := reader.feed_line(line)) is not None]
    reader.close()
    assert out == [AtlasRow(r.timestamp, aw.exact_values(r.values)) for r in numeric]


def test_csv_reader_keeps_quoted_newlines_and_text() -> None:
    rows = [AtlasRow(datetime(2026, 1, 1, tzinfo=UTC), {"note": 'say "hi",\nthen\r\nbye', "n": 1})]
    reader = streams.CsvRecordReader()
    out = [r for line in _csv_body(rows, ["n", "note"]).split("\n") if (r := reader.feed_line(line))]
    assert out == rows


def test_sse_parser_follows_the_spec() -> None:
    parser = streams.SseParser()
    lines = [": keepalive", "event: data", 'data: {"timestamp":"2026-11-20T12:00:00Z",', 'data: "close":1}',
             "id: 7", "", "", "event: heartbeat", "data:{}", ""]
    events = [e for line in lines if (e := parser.feed(line)) is not None]
    assert [e.event for e in events] == ["data", "heartbeat"]
    assert events[0].row == AtlasRow(datetime(2026, 11, 20, 12, tzinfo=UTC), {"close": 1})
    with pytest.raises(MalformedResponse):
        streams.decode_event("data", "not json")


def test_wire_values_turn_decimals_into_json_numbers() -> None:
    row = AtlasRow(datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
                   {"a": Decimal("104500"), "b": Decimal("0.1"), "c": [Decimal("2.50")], "d": None})
    assert aw.wire_row(row) == {"timestamp": "2026-01-01T00:00:00.000005Z",
                                "values": {"a": 104500, "b": 0.1, "c": [2.5], "d": None}}
    assert aw.exact_values({"a": [0.1, 2], "b": "x"}) == {"a": [Decimal("0.1"), 2], "b": "x"}
    assert aw.query_value(2) == "2" and aw.query_value("x") == "x" and aw.query_value(True) == "true"
    with pytest.raises(ValueError):
        aw.wire_value(Decimal("NaN"))


# --------------------------------------------------------------------------------------------- Atmotube


@FAST
@given(st.one_of(json_values, _objects_with(ATMOTUBE_KEYS)))
def test_atmotube_parsers_raise_only_typed_errors(data: Any) -> None:
    _typed(at.parse_item, data)
    _typed(at.parse_json_page, data, allowed=(MalformedResponse, Rejected))
    _typed(at.parse_json_page, {"status": 0, "data": {"total": 3, "items": [data]}})
    _typed(at.parse_json_page, {"status": 0, "data": data})
    _typed(at.parse_item, {"time": "2026-11-20T10:01:00.000Z", "coords": data, "pm25": data})


@FAST
@given(st.text(max_size=300))
def test_atmotube_csv_parser_takes_any_text(text: str) -> None:
    _typed(at.parse_csv, text)
    _typed(at.parse_csv, "time,pm25,lat,lon\n" + text)


@FAST
@given(st.lists(st.fixed_dictionaries(
    {"minute": st.integers(0, 5000)},
    optional={k: st.one_of(st.none(), st.integers(0, 500), st.floats(0, 100)) for k in at.MEASUREMENTS}
    | {"coords": st.fixed_dictionaries({"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)})}),
    max_size=20))
def test_atmotube_json_and_csv_agree_and_none_is_never_zero(raw: list[dict[str, Any]]) -> None:
    items = [{"time": (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=d.pop("minute"))).isoformat(),
              **d} for d in raw]
    _total, from_json = at.parse_json_page({"status": 0, "data": {"total": len(items), "items": items}})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time", *at.MEASUREMENTS, "lat", "lon"])
    for item in items:
        flat = {**item, **(item.get("coords") or {})}
        writer.writerow(["" if flat.get(k) is None else repr(flat[k]) if isinstance(flat[k], float) else flat[k]
                         for k in ["time", *at.MEASUREMENTS, "lat", "lon"]])
    assert at.parse_csv(buf.getvalue()) == from_json
    for item, reading in zip(items, from_json, strict=True):
        for key in at.MEASUREMENTS:
            assert reading.values[key] == (None if item.get(key) is None else float(item[key]))
    merged = at.merge(from_json + from_json[::-1])
    assert [r.time for r in merged] == sorted({r.time for r in from_json})


@given(st.dates(date(2020, 1, 1), date(2030, 1, 1)), st.integers(0, 60))
def test_windows_cover_the_range_with_at_most_seven_days_each(start: date, span: int) -> None:
    end = start + timedelta(days=span)
    windows = at.plan_windows(start, end)
    assert windows[0][0] == start and windows[-1][1] == end
    assert len(windows) == span // 7 + 1
    for (_a, b), (c, _d) in itertools.pairwise(windows):
        assert c == b + timedelta(days=1)
    assert all(0 <= (b - a).days <= 6 for a, b in windows)
    assert at.plan_windows(end, start) == ([] if span else [(start, start)])
