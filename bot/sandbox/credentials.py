"""Credentials the sandbox accepts, matching `config/paper.toml`. They are not real keys."""

from __future__ import annotations

from decimal import Decimal

ATMOS_KEY = "sandbox-atmos-key"
SFOX_KEY = "sandbox-sfox-key"  # optional on sFOX; any bearer key (or none) is accepted

COINBTR_TOKEN = "sandbox-coinbtr-token"  # trade + withdraw + deposit, user `paper`
COINBTR_USER = "paper"
COINBTR_READONLY_TOKEN = "sandbox-coinbtr-readonly"  # no permission, user `reader`
COINBTR_READONLY_USER = "reader"
# The `paper` account's starting balances when no settings say otherwise (`[paper].balances`).
COINBTR_BALANCES: dict[str, Decimal] = {"btc": Decimal("1"), "mxn": Decimal("2000000")}

ATLAS_KEY = "sandbox-atlas-key"  # user `tradebot`
ATLAS_USER = "tradebot"
ATLAS_KEY_2 = "sandbox-atlas-key-2"  # user `other`, for ownership (403) tests
ATLAS_USER_2 = "other"

ATMOTUBE_KEY = "sandbox-atmotube-key"
ATMOTUBE_DEVICES: tuple[str, ...] = ("AA:BB:CC:DD:EE:FF",)
