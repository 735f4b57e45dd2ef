"""Built-in simulators of the five external APIs over real HTTP, driven by one seeded simulated market.

`market` (prices), `faults` (fault injection middleware), `ratelimit` (clock-based limiters), one module per
service (`atmos`, `sfox`, `coinbtr`, `atlas`, `atmotube`) and `runner.Sandbox`, which serves them all.
"""
