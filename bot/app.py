"""The composition root: what `tradebot run` is made of, and how the pieces are wired.

Read this file to find where anything comes from. It builds each client once (a service's request budget
is planned once), attaches every subscriber to the event path before any producer starts (nothing is
missed, warm-up included), and declares to the daemon what runs in which phase, what `/status` shows, and
what is closed at stop. The daemon (`bot.daemon`) owns the order and the bounds.
"""

from __future__ import annotations

import asyncio

from bot.clients.registry import Clients
from bot.daemon import Daemon
from bot.execution.broker import Broker
from bot.execution.journal import Journal
from bot.execution.killswitch import KillSwitch
from bot.execution.live import LiveBroker
from bot.execution.manager import OrderManager
from bot.execution.paper import PaperBroker
from bot.execution.pnl import PnL
from bot.execution.startup import check_live
from bot.execution.states import OrderState, is_final
from bot.feeds.poller import Poller
from bot.logs import get_logger
from bot.metrics import counts
from bot.priority import OrdersFirst
from bot.recorder.cli import remove_urls, write_urls
from bot.recorder.datasets import UNORDERED, Datasets
from bot.recorder.drain import Drain
from bot.recorder.outbox import Outbox
from bot.recorder.rows import RecorderSubscriber
from bot.settings import Settings
from bot.signals.evaluator import Evaluator
from bot.signals.handoff import Handoffs
from bot.status import StatusServer
from bot.view import View
from bot.wallet.sweeper import Sweeper, holdings
from bot.wallet.watcher import WalletWatcher

log = get_logger("bot.app")

FOLLOW_EVERY_CLOCK_S = 20.0  # how often working orders are followed (fills, TTL, stops), in clock seconds


async def build(d: Daemon) -> None:
    """Wire one daemon from its settings (the build step of the start-up)."""
    settings = d.settings
    urls: dict[str, str] | None = None
    if settings.sandbox.enabled:
        from bot.sandbox.embedded import open_sandbox

        link = await open_sandbox(settings, settings.state_dir)
        d.on_close("sandbox", link.close)  # registered first: closed last, after in-flight jobs finished
        if link.sandbox is not None:  # in-process: let `tradebot atlas` reach it while the daemon runs
            write_urls(settings.state_dir, link.urls)

            async def forget_urls() -> None:
                remove_urls(settings.state_dir)
            d.on_close("sandbox.urls", forget_urls)
        d.use_clock(link.clock)
        urls = dict(link.urls)
        d.report("sandbox", link.status)
    store = d.open_store()

    clients = Clients.build(settings, d.clock, urls)
    d.on_close("clients", clients.close)
    d.metrics.add_http(clients.snapshots)
    if settings.mode == "live":  # before anything can trade: a token that cannot trade stops the start (exit 2)
        note = await check_live(settings, clients.coinbtr)
        if note:
            log.warning("live.simulated", note=note)

    kill_switch = KillSwitch(settings.kill_switch_path, store, d.clock, d.events)
    d.on_phase("reconcile", "kill_switch", kill_switch.announce)  # first: execution learns it before it reconciles
    d.on_task("kill_switch", kill_switch.watch)
    d.report("kill_switch", kill_switch.status)

    status = StatusServer(settings.status, d.status, d.health, d.metrics.renderer,
                          kill=kill_switch.engage, resume=kill_switch.release)
    await status.start()
    d.on_close("status", status.stop)

    outbox: Outbox | None = None
    if settings.atlas.enabled:
        # Subscribed before any producer exists: every row from the first warm-up candle on is recorded.
        specs = Datasets(settings)
        outbox = Outbox(store, d.clock, UNORDERED)
        d.events.subscribe("recorder", RecorderSubscriber(outbox).on_event)
        drain = Drain(settings, d.clock, settings.state_dir, clients.atlas, specs, d.events, d.metrics)
        d.on_task("recorder", drain.run)
        d.on_close("recorder", drain.close)
        # Closed before the clients (reverse order): the outbox drains for a bounded time first.
        d.on_close("recorder.flush", lambda: drain.flush(settings.stop_timeout_seconds * 0.4))
        d.report("recorder", drain.status)

    # Execution: the broker is the only difference between paper and live.
    handoffs = Handoffs(store, d.clock)
    broker: Broker = (LiveBroker(clients.coinbtr, d.clock) if settings.mode == "live"
                      else PaperBroker(clients.coinbtr, store, d.clock, settings.paper))
    journal = Journal(store, d.clock, d.events, outbox, broker=broker.kind)
    priority = OrdersFirst()
    manager = OrderManager(settings, d.clock, store, d.events, journal, broker, handoffs, priority=priority)
    d.on_phase("reconcile", "orders", manager.reconcile)
    d.on_task("execution", manager.run)
    d.on_schedule(lambda jobs: jobs.every("execution", manager.follow,
                                          every_s=FOLLOW_EVERY_CLOCK_S / d.clock.speed))
    # Notifications (bot.notify): a subscriber that only queues (after the event's transaction commits) and
    # one supervised sender task; at stop what waits is sent within a bound — registered before the cancels at
    # stop, so it is closed after them and their fills are told too.
    if settings.notify.enabled:
        from bot.notify.sender import FLUSH_MAX_S, Notifier
        from bot.notify.summary import DailySummary
        from bot.notify.targets import open_targets

        notifier = Notifier(settings, d.clock, open_targets(settings.notify.urls), count=d.metrics.on_notify,
                            summary=DailySummary(d.status, journal.fills_since), after_commit=store.after_commit)
        d.events.subscribe("notify", notifier.on_event)
        d.on_task("notify", notifier.run)
        d.on_close("notify", lambda: notifier.flush(min(FLUSH_MAX_S, settings.stop_timeout_seconds * 0.2)))
        d.report("notify", notifier.status)

    if settings.execution.on_stop == "cancel":
        # Closed first (registered last): cancels are journaled and recorded before the outbox drains.
        async def cancel_open_orders() -> None:
            n = await manager.cancel_all("daemon stopping (execution.on_stop = cancel)")
            log.info("execution.cancelled_at_stop", orders=n)
        d.on_close("execution.on_stop", cancel_open_orders)
    d.report("execution", manager.status)
    d.report("pnl", PnL(journal, broker.marks).status)
    manager.on_request = d.metrics.observe_order_request
    d.metrics.add_gauges("orders_working", "The bot's unfinished orders, by state", "state", lambda: counts(
        (o.state.value for o in journal.unfinished()), (s.value for s in OrderState if not is_final(s))))
    d.report("paper" if settings.mode == "paper" else "broker", broker.status)

    # Wallet: balances, transfers and unexplained changes (paper: the paper account, no private request);
    # sweeps only live with withdrawals enabled. Reconciled after the orders (positions known first).
    sweeper = None
    if settings.mode == "live" and settings.wallet.withdrawals_enabled and settings.wallet.sweeps:
        sweeper = Sweeper(settings, d.clock, store, d.events, clients.coinbtr, holdings(journal))
    watcher = WalletWatcher(settings, d.clock, store, d.events, journal, broker,
                            clients.coinbtr if settings.mode == "live" else None, sweeper, manager.balances)
    d.on_phase("reconcile", "wallet", watcher.reconcile)
    d.on_schedule(lambda jobs: jobs.every("wallet", watcher.poll,
                                          every_s=settings.wallet.poll_seconds / d.clock.speed))
    d.report("wallet", watcher.status)
    d.metrics.add_labelled_gauges("wallet_balance", "Wallet balances by coin and field (last poll)",
                                  ["coin", "field"], watcher.balance_values)
    if sweeper is not None:
        swept = sweeper
        d.metrics.add_gauges("wallet_swept_today", "Swept today (UTC) per coin", "coin",
                             lambda: {c: float(v) for c, v in swept.swept_today().items()})

    # Producers get the event bus at construction; subscribers are already attached (metrics, alarms,
    # recorder, execution).
    evaluator = Evaluator(settings, d.clock, d.events, handoffs, priority)
    poller = Poller(settings, d.clock, store, d.events, clients, evaluator)
    d.on_phase("warm_up", "feeds", poller.warm_up)
    d.on_schedule(poller.schedule)
    d.on_maintenance(evaluator.prune)
    d.report("market", poller.status)
    d.report("strategies", evaluator.status)
    d.report("http", clients.snapshots)


async def run_daemon(settings: Settings, duration: float | None = None, view: View | None = None) -> int:
    """Build the daemon from settings and run it to completion; returns the exit code. With a `view`, the
    run is shown as it goes (live view or lines) and summarised at the end."""
    d = Daemon(settings)
    if view is None:
        return await d.run(build, duration=duration)
    d.events.subscribe("view", view.on_event)
    view.attach(d.status)
    shown = asyncio.get_running_loop().create_task(view.run(), name="view")
    try:
        code = await d.run(build, duration=duration)
    finally:
        shown.cancel()
        await asyncio.gather(shown, return_exceptions=True)
    final = {name: d.report_of(name) for name in ("recorder", "http")}  # after the last flush
    print(view.summary(code, {k: v for k, v in final.items() if v is not None}), file=view.out, flush=True)
    return code
