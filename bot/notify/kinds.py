"""The kinds of notification (what `[notify] events` lists), how they group, and their default pacing.

A kind is what a person turns on or off; a *group* is what is paced together: the two halves of a condition
that can flap (a feed stale then fresh, an alarm raised then cleared) share one group, so a flapping
condition makes at most one message per interval however often it flips. Pure data: no imports.
"""

from __future__ import annotations

ORDER_FILLED = "order_filled"
ORDER_REJECTED = "order_rejected"
ORDER_UNKNOWN = "order_unknown"  # an order's outcome still unknown after a bound
KILL_SWITCH = "kill_switch"
DAILY_LOSS_LIMIT = "daily_loss_limit"
DEPOSIT = "deposit"
WITHDRAWAL = "withdrawal"
BALANCE_UNEXPLAINED = "balance_unexplained"
FEED_STALE = "feed_stale"
FEED_FRESH = "feed_fresh"
ALARM_RAISED = "alarm_raised"  # includes the recorder's backlog alarm (Atlas far behind)
ALARM_CLEARED = "alarm_cleared"
DAEMON = "daemon"  # started, stopping
TASK_RESTARTED = "task_restarted"
DAILY_SUMMARY = "daily_summary"
TEST = "test"  # `tradebot notify-test` only; not configurable

KINDS = (ORDER_FILLED, ORDER_REJECTED, ORDER_UNKNOWN, KILL_SWITCH, DAILY_LOSS_LIMIT, DEPOSIT, WITHDRAWAL,
         BALANCE_UNEXPLAINED, FEED_STALE, FEED_FRESH, ALARM_RAISED, ALARM_CLEARED, DAEMON, TASK_RESTARTED,
         DAILY_SUMMARY)

GROUP = {FEED_STALE: "feed", FEED_FRESH: "feed", ALARM_RAISED: "alarm", ALARM_CLEARED: "alarm"}

# Clock seconds a group waits after its first note for others to join the same message (a burst of fills
# becomes one message). Zero: sent at once.
GATHER_S = {ORDER_FILLED: 60.0, DAEMON: 0.0, DAILY_SUMMARY: 0.0, TEST: 0.0, KILL_SWITCH: 0.0}
DEFAULT_GATHER_S = 5.0

# Default `min_interval_seconds` per kind (clock seconds between two messages of its group); the
# configuration overrides any of them.
MIN_INTERVAL_S = {FEED_STALE: 300.0, FEED_FRESH: 300.0, ALARM_RAISED: 60.0, ALARM_CLEARED: 60.0,
                  BALANCE_UNEXPLAINED: 300.0, TASK_RESTARTED: 300.0}


def group_of(kind: str) -> str:
    """The pacing group of `kind` (the kind itself unless it is one half of a flapping pair)."""
    return GROUP.get(kind, kind)
