"""Destination address checks per coin: pure functions, used when the configuration loads.

A sweep can only go to an address written in `[[wallet.sweeps]]`, so a typo there would send money to
nowhere (or to someone else). Each coin's format is checked with its checksum where the format has one:

- `btc`: bech32 (BIP-173, witness v0) or bech32m (BIP-350, witness v1+) with the mainnet prefix `bc`, or
  base58check (BIP-13) with a P2PKH (`1...`) or P2SH (`3...`) version byte;
- `eth`: `0x` and 40 hexadecimal digits (the EIP-55 mixed-case checksum needs Keccak-256, which the
  standard library does not have, so case is not checked);
- `mxn`: an 18-digit CLABE whose last digit is its check digit (weights 3, 7, 1; modulo 10).

`address_problem(coin, address)` returns why an address is not acceptable, or None when it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32_CONST = 1
BECH32M_CONST = 0x2BC830A3
BTC_HRP = "bc"
BTC_VERSIONS = {0x00: "P2PKH", 0x05: "P2SH"}
CLABE_WEIGHTS = (3, 7, 1) * 6


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: list[int], from_bits: int, to_bits: int) -> list[int] | None:
    """Regroup `from_bits`-bit values as `to_bits`-bit values, no padding allowed (decoding)."""
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None
    return out


def segwit_problem(address: str, hrp: str = BTC_HRP) -> str | None:
    """Why `address` is not a valid segwit address for `hrp` (bech32 v0, bech32m v1+), or None."""
    if address.lower() != address and address.upper() != address:
        return "mixes upper and lower case"
    addr = address.lower()
    if len(addr) > 90:
        return "longer than 90 characters"
    pos = addr.rfind("1")
    if pos < 1 or pos + 7 > len(addr):
        return "has no bech32 separator and checksum"
    if addr[:pos] != hrp:
        return f"prefix is {addr[:pos]!r}, expected {hrp!r} (mainnet)"
    if any(c not in BECH32_CHARSET for c in addr[pos + 1:]):
        return "has characters outside the bech32 alphabet"
    data = [BECH32_CHARSET.index(c) for c in addr[pos + 1:]]
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        return "bech32 checksum does not match"
    version, program = data[0], _convert_bits(data[1:-6], 5, 8)
    if program is None or not 2 <= len(program) <= 40:
        return "witness program has a bad length"
    if version > 16:
        return "witness version above 16"
    if version == 0 and len(program) not in (20, 32):
        return "witness v0 program must be 20 or 32 bytes"
    if (version == 0) != (const == BECH32_CONST):
        return "witness v0 needs bech32, v1 and later bech32m (BIP-350)"
    return None


def base58_decode(text: str) -> bytes | None:
    """The bytes of a base58 string (leading `1`s are zero bytes), or None with a character outside it."""
    n = 0
    for c in text:
        i = BASE58_ALPHABET.find(c)
        if i < 0:
            return None
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def base58check_problem(address: str) -> str | None:
    """Why `address` is not a mainnet P2PKH/P2SH base58check address, or None."""
    raw = base58_decode(address)
    if raw is None:
        return "has characters outside the base58 alphabet"
    if len(raw) != 25:
        return "does not decode to 25 bytes"
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        return "base58check checksum does not match"
    if payload[0] not in BTC_VERSIONS:
        return f"version byte {payload[0]:#04x} is not mainnet P2PKH (0x00) or P2SH (0x05)"
    return None


def btc_problem(address: str) -> str | None:
    """A bech32/bech32m `bc1...` address or a base58check `1...`/`3...` address."""
    if address[:3].lower() == "bc1":
        return segwit_problem(address)
    if address[:1] in ("1", "3"):
        return base58check_problem(address)
    return "expected a bech32 address (bc1...) or a base58check address (1... or 3...)"


def eth_problem(address: str) -> str | None:
    """`0x` and 40 hexadecimal digits."""
    if len(address) != 42 or not address.startswith("0x"):
        return "expected 0x followed by 40 hexadecimal digits"
    if any(c not in "0123456789abcdefABCDEF" for c in address[2:]):
        return "has characters that are not hexadecimal digits"
    return None


def clabe_check_digit(first17: str) -> int:
    """The CLABE check digit of its first 17 digits."""
    total = sum(int(d) * w % 10 for d, w in zip(first17, CLABE_WEIGHTS, strict=False))
    return (10 - total % 10) % 10


def mxn_problem(address: str) -> str | None:
    """An 18-digit CLABE with a matching check digit."""
    if len(address) != 18 or not address.isascii() or not address.isdigit():
        return "expected an 18-digit CLABE"
    if clabe_check_digit(address[:17]) != int(address[17]):
        return "CLABE check digit does not match"
    return None


CHECKS: dict[str, Callable[[str], str | None]] = {"btc": btc_problem, "eth": eth_problem, "mxn": mxn_problem}


def address_problem(coin: str, address: str) -> str | None:
    """Why `address` is not a valid destination for `coin`, or None when it is."""
    check = CHECKS.get(coin.lower())
    if check is None:
        return f"no address format is known for coin {coin!r} (known: {', '.join(sorted(CHECKS))})"
    if address != address.strip() or not address:
        return "is empty or has surrounding spaces"
    return check(address)
