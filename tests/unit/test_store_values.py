"""Store values round-trip with their types: Decimal (exponent kept), aware datetime, nested containers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.store import Store, dumps, loads

offsets = st.sampled_from([UTC, timezone(timedelta(hours=-6)), timezone(timedelta(hours=5, minutes=30))])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=offsets)
)
keys = st.text(max_size=8) | st.sampled_from(["$dec", "$dt", "$", "$$dec", "$$x", "a"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=20)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down; Decimals with the same digits and exponent."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(values)
def test_dumps_loads_round_trip(value: Any) -> None:
    assert same(loads(dumps(value)), value)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(keys, values, max_size=4), value=values)
def test_store_round_trips_kv_and_payloads(tmp_path: Path, payload: dict[str, Any], value: Any) -> None:
    s = Store.open(tmp_path)
    try:
        s.kv_set("k", value)
        assert same(s.kv_get("k"), value)
        seq = s.append("t", payload)
        assert same(s.read("t", after=seq - 1)[0].payload, payload)
    finally:
        s.close()


def test_decimal_exponent_and_datetime_kept(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    when = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
    s.append("fills", {"price": Decimal("1.10"), "big": Decimal("1E+3"), "at": when, "nested": [Decimal("-0.00")]})
    p = s.read("fills")[0].payload
    assert str(p["price"]) == "1.10" and str(p["big"]) == "1E+3" and str(p["nested"][0]) == "-0.00"
    assert p["at"] == when and p["at"].tzinfo is not None
    s.close()


def test_old_plain_json_rows_still_read(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with s.transaction() as c:
        c.execute("INSERT INTO kv (key, value, updated_at) VALUES ('old', ?, 'x')",
                  ('{"amount":"0.10","at":"2025-01-01T00:00:00+00:00","n":1.5,"$odd":1}',))
    assert s.kv_get("old") == {"amount": "0.10", "at": "2025-01-01T00:00:00+00:00", "n": 1.5, "$odd": 1}
    s.close()


def test_user_keys_that_look_like_tags_are_not_mistaken_for_them() -> None:
    value = {"$dec": "1.5"}
    assert dumps(value) == '{"$$dec":"1.5"}'
    assert loads(dumps(value)) == value


def test_naive_datetime_and_unknown_types_are_refused_before_writing(tmp_path: Path) -> None:
    s = Store.open(tmp_path)
    with pytest.raises(TypeError, match="naive"):
        s.append_many("t", [{"ok": 1}, {"at": datetime(2026, 1, 1)}])
    with pytest.raises(TypeError, match="not storable"):
        s.kv_set("k", {1, 2})
    assert s.count("t") == 0 and s.kv_get("k") is None
    s.close()
