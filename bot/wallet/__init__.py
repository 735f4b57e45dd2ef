"""The wallet: the watcher (balances, deposits, withdrawals, unexplained changes) and policy-bound sweeps."""
