"""User strategy files for tests: one that always buys, one that always raises (a user's bug)."""

from __future__ import annotations

from pathlib import Path

_HEAD = '''
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from bot.domain import Action
from bot.indicators import Indicator, Sma
from bot.strategy import BUY, Codes, Floats, Strategy, StrategyParams


class P(StrategyParams):
    window: int = Field(3, ge=2)
'''

ALWAYS_BUY = _HEAD + '''

class AlwaysBuy(Strategy[P]):
    name: ClassVar[str] = "always_buy"
    Params = P

    def indicators(self, params: P) -> Sequence[Indicator]:
        return [Sma(window=params.window)]

    def rule(self, cols: Mapping[str, Floats], params: P) -> Codes:
        return np.full(len(cols["close"]), BUY, dtype=np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: P) -> str:
        return "always"


STRATEGY = AlwaysBuy()
'''

BOOM = _HEAD + '''

class Boom(Strategy[P]):
    name: ClassVar[str] = "boom"
    Params = P

    def indicators(self, params: P) -> Sequence[Indicator]:
        return [Sma(window=params.window)]

    def rule(self, cols: Mapping[str, Floats], params: P) -> Codes:
        raise ZeroDivisionError("user strategy bug")

    def explain(self, action: Action, values: Mapping[str, float], params: P) -> str:
        return "never"


STRATEGY = Boom()
'''


def write(directory: Path) -> Path:
    """Write `always_buy.py` and `boom.py` into `directory`; returns it (for `strategy_paths`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "always_buy.py").write_text(ALWAYS_BUY)
    (directory / "boom.py").write_text(BOOM)
    return directory


def entries_toml(strategy_dir: Path, feed: str = '{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }'
                 ) -> str:
    """`strategy_paths` plus a boom and an always_buy instance on the same stream, as TOML."""
    return (f'\n[[strategies]]\nname = "buyer"\nstrategy = "always_buy"\nmarket = "btc-mxn"\nfeed = {feed}\n'
            f'order_amount = "0.001"\n'
            f'\n[[strategies]]\nname = "broken"\nstrategy = "boom"\nmarket = "btc-mxn"\nfeed = {feed}\n'
            f'order_amount = "0.001"\n')


WEDGE = _HEAD + '''
import time
from pathlib import Path


class WP(StrategyParams):
    flag: str  # while this file exists, an evaluation blocks (a user's endless loop)
    marker: str  # touched when it starts blocking


class Wedge(Strategy[WP]):
    name: ClassVar[str] = "wedge"
    Params = WP

    def indicators(self, params: WP) -> Sequence[Indicator]:
        return [Sma(window=2)]

    def rule(self, cols: Mapping[str, Floats], params: WP) -> Codes:
        if Path(params.flag).exists():
            Path(params.marker).touch()
            while Path(params.flag).exists():  # blocks the daemon's thread for real, as a stuck job would
                time.sleep(0.02)
            Path(params.marker).unlink()
        return np.zeros(len(cols["close"]), dtype=np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: WP) -> str:
        return "waits"


STRATEGY = Wedge()
'''


def write_wedge(directory: Path, flag: Path, marker: Path,
                feed: str = '{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }') -> str:
    """Write `wedge.py` (blocks while `flag` exists, touching `marker`) into `directory`; its entry as TOML."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "wedge.py").write_text(WEDGE)
    return (f'\n[[strategies]]\nname = "wedged"\nstrategy = "wedge"\nmarket = "btc-mxn"\nfeed = {feed}\n'
            f'params = {{ flag = "{flag}", marker = "{marker}" }}\norder_amount = "0.001"\n')


CRASH_RECORDER = _HEAD + '''
from pathlib import Path

from bot.recorder.drain import Drain


class CP(StrategyParams):
    flag: str  # when this file appears, the recorder task's next round raises (once; the file is removed)


_drain_once = Drain.drain_once


async def _raise_once(self: Drain) -> bool:
    Drain.drain_once = _drain_once  # type: ignore[method-assign]
    raise RuntimeError("injected by the crash_recorder test strategy")


class CrashRecorder(Strategy[CP]):
    name: ClassVar[str] = "crash_recorder"
    Params = CP

    def indicators(self, params: CP) -> Sequence[Indicator]:
        return [Sma(window=2)]

    def rule(self, cols: Mapping[str, Floats], params: CP) -> Codes:
        flag = Path(params.flag)
        if flag.exists():  # a bug in a supervised task, made to happen once, on cue
            flag.unlink()
            Drain.drain_once = _raise_once  # type: ignore[method-assign]
        return np.zeros(len(cols["close"]), dtype=np.int8)

    def explain(self, action: Action, values: Mapping[str, float], params: CP) -> str:
        return "holds"


STRATEGY = CrashRecorder()
'''


def write_crash_recorder(directory: Path, flag: Path,
                         feed: str = '{ source = "atmos", exchange = "binance", symbol = "BTCUSDT" }') -> str:
    """Write `crash_recorder.py` into `directory`: once `flag` exists, its next evaluation makes the daemon's
    recorder task raise once (a bug in a supervised task, on cue). Returns its entry as TOML."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "crash_recorder.py").write_text(CRASH_RECORDER)
    return (f'\n[[strategies]]\nname = "crasher"\nstrategy = "crash_recorder"\nmarket = "btc-mxn"\nfeed = {feed}\n'
            f'params = {{ flag = "{flag}" }}\norder_amount = "0.001"\n')
