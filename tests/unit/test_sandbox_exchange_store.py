"""`ExchangeStore`: exact round trips, incremental saves, ids that never repeat, a clear refusal of unknown state."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import ManualClock
from bot.domain import Side
from bot.sandbox.coinbtr import CoinbtrSim, default_tokens
from bot.sandbox.credentials import COINBTR_BALANCES, COINBTR_USER
from bot.sandbox.exchange import SimFill, SimOrder
from bot.sandbox.exchange_store import ExchangeStore, decode, encode
from bot.sandbox.exchange_wallet import SimDeposit, SimWithdrawal
from bot.sandbox.market import SimMarket

D = Decimal
WHEN = datetime(2026, 11, 20, 12, 0, 1, 123456, tzinfo=UTC)


def make(clock: ManualClock, path: Path) -> CoinbtrSim:
    return CoinbtrSim(SimMarket(clock, seed=42, history_days=1), clock, default_tokens(), COINBTR_BALANCES,
                      seed=42, store=ExchangeStore(path))


def test_every_record_round_trips_exactly() -> None:
    order = SimOrder(1001, "paper", "btc-mxn", Side.SELL, D("1234567.89"), D("0.00000001"), D("0E-8"), WHEN,
                     D("0.075"), D("1.000000000000000000000000001"), status="filled", closed_at=WHEN,
                     next_minute=None, used=D("1E+2"), base_low=D("-0.5"))
    fill = SimFill(5001, 1001, "paper", "btc-mxn", Side.BUY, D("1.10"), D("2"), D("0.0015"), "btc", True, WHEN)
    withdrawal = SimWithdrawal(301, "paper", "btc", "bc1q", D("0.01"), D("0.0001"), WHEN, will_fail=True)
    deposit = SimDeposit(701, "paper", "eth", "0xabc", D("2.000"), "tx", WHEN, confirmations=12, confirmed=True)
    for record in (order, fill, withdrawal, deposit):
        back = decode(type(record), encode(record))
        assert back == record
        assert [str(getattr(back, f)) for f in record.__slots__] == [str(getattr(record, f))
                                                                     for f in record.__slots__]


def test_saves_write_only_what_changed(clock: ManualClock, tmp_path: Path) -> None:
    sim = make(clock, tmp_path / "x.sqlite3")
    assert sim.store is not None
    assert sim.store.save(sim, sim.funded) == 0  # the constructor saved already
    price = sim.market.price("btc-mxn") * D("0.9")
    sim.engine.place(COINBTR_USER, "btc-mxn", Side.BUY, D("0.001"), price.quantize(D("0.01")))
    written = sim.store.save(sim, sim.funded)
    assert 2 <= written <= 4  # the order, the mxn balance, the engine's counters (+ nothing else)
    assert sim.store.save(sim, sim.funded) == 0
    sim.close()


def test_a_reopened_store_continues_ids_and_balances(clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    sim = make(clock, path)
    price = (sim.market.price("btc-mxn") * D("0.9")).quantize(D("0.01"))
    first = sim.engine.place(COINBTR_USER, "btc-mxn", Side.BUY, D("0.001"), price)
    sim.persist()
    balances = sim.balances_of(COINBTR_USER)
    # Like a SIGKILL: the first simulator is never closed.
    again = make(clock, path)
    assert again.balances_of(COINBTR_USER) == balances  # not funded a second time
    assert again.orders[first.id] == first
    assert again.engine.place(COINBTR_USER, "btc-mxn", Side.BUY, D("0.001"), price).id == first.id + 1
    sim.close()
    again.close()


def test_an_unknown_state_version_is_refused(clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    make(clock, path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(ValueError, match="unknown sandbox state version 99"):
        make(clock, path)
