"""Built-in simulators of the five external APIs over real HTTP, driven by one seeded simulated market.

`market` (prices), `faults` (fault injection middleware), `ratelimit` (clock-based limiters), one module per
service (`atmos`, `sfox`, `coinbtr`, `atlas`, `atmotube`) and `runner.Sandbox`, which serves them all (and keeps
the exchange and Atlas in a state directory when asked). `embedded.open_sandbox` is how the daemon gets its
sandbox: in-process, or an external `tradebot sandbox` whose clock it follows.
"""
