"""Built-in strategies, loaded by name (`strategy = "rsi_reversion"` in a `[[strategies]]` entry).

Each module defines one `bot.strategy.Strategy` subclass and exposes an instance as the module-level
`STRATEGY`; its `name` equals the module name. A user strategy follows the same convention in a file
`<name>.py` inside one of the `strategy_paths` directories. Built-ins: `rsi_reversion`, `macd_trend`,
`bollinger_breakout`; each module's docstring states its rule, params and warm-up.
"""
