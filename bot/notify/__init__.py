"""Notifications to people through Apprise (Telegram, Discord, Slack, e-mail, ntfy, webhooks, ...).

`kinds` names what can be sent; `compose` turns events into short, phone-sized notes and messages (pure);
`pacing` gathers bursts and paces each group (pure, on clock seconds); `targets` wraps Apprise (one per
configured URL; the only module that imports it); `sender` is the event-path subscriber and the one sender
task (bounded queues, retries with backoff, drops counted); `summary` writes the daily summary. This package
imports nothing heavy at import time: `bot.settings` reads `kinds`.
"""
