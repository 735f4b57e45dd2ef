"""Deterministic synthetic 1-minute BTC/USDT OHLCV series for benchmarks.

Usage: python3 gen_synth.py OUT.csv [n_bars=525600] [seed=42]
Bars start 2023-01-01 00:00 UTC; the CSV index column is `date` (naive UTC).

Vendored from the team's shared generator (../shared/bench/gen_synth.py), unchanged but for the
sys.path line: bench/secrets.py would shadow the standard library's `secrets` (numpy needs it).
"""
import sys
from pathlib import Path

# Not the script's own directory first: bench/secrets.py would shadow the standard library's `secrets`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def make_series(n=525_600, seed=42, start="2023-01-01", p0=30_000.0, sigma=0.0008):
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, sigma, n)
    close = p0 * np.exp(np.cumsum(r))
    open_ = np.empty(n)
    open_[0] = p0
    open_[1:] = close[:-1]
    wick_hi = np.abs(rng.normal(0.0, sigma / 2, n))
    wick_lo = np.abs(rng.normal(0.0, sigma / 2, n))
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    vol = rng.lognormal(mean=2.0, sigma=0.8, size=n)
    idx = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="date")
    df = pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close, "Volume": vol}, index=idx)
    return df.round({"Open": 2, "High": 2, "Low": 2, "Close": 2, "Volume": 6})


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 525_600
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    df = make_series(n, seed)
    df.index = df.index.tz_localize(None)
    df.to_csv(out)
    print(out, df.shape[0], "bars", df.index[0], "->", df.index[-1])
