"""Instrument symbols: ``EXCHANGE:TRADINGSYMBOL``, with NSE as the default exchange.

Kite keys instruments by ``exchange:tradingsymbol`` (its docs say to use that pair as the unique
key, since instrument tokens are reused after expiry). Users mostly type bare NSE equity
symbols, so ``RELIANCE`` means ``NSE:RELIANCE`` and NSE symbols are shown without the prefix.
Index tradingsymbols contain spaces (``NSE:NIFTY 50``), equity ones ``&`` and ``-``
(``M&M``, ``BAJAJ-AUTO``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_EXCHANGE = "NSE"

# Kite's exchange names (instruments dump ``exchange`` column and quote keys). MCXSX and NCO
# appear as ticker segments; they are accepted so that any instrument Kite can stream parses.
EXCHANGES: tuple[str, ...] = ("NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "MCXSX", "NCO")

MAX_TRADINGSYMBOL_LENGTH = 50

# Letters, digits, and the punctuation real tradingsymbols use: space (indices), & (M&M),
# - (BAJAJ-AUTO), _ . / ( ) (a few BSE and index names). Anything else is a typo or garbage.
_TRADINGSYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9 &\-_./()]*$")


class InvalidSymbol(ValueError):
    """A symbol string that cannot name an instrument."""

    def __init__(self, value: object, problem: str) -> None:
        self.value = value
        self.problem = problem
        super().__init__(
            f"invalid symbol {value!r}: {problem}; write it as TRADINGSYMBOL (NSE) or "
            f"EXCHANGE:TRADINGSYMBOL, e.g. RELIANCE, BSE:SENSEX, NSE:NIFTY 50"
        )


@dataclass(frozen=True, slots=True, order=True)
class Symbol:
    exchange: str
    tradingsymbol: str

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def display(self) -> str:
        """Short form: NSE symbols without their prefix, others as ``EXCHANGE:SYMBOL``."""
        if self.exchange == DEFAULT_EXCHANGE:
            return self.tradingsymbol
        return str(self)


def parse_symbol(value: str | Symbol, default_exchange: str = DEFAULT_EXCHANGE) -> Symbol:
    """Parse ``RELIANCE``, ``nse:reliance``, ``BSE:SENSEX`` or ``NSE:NIFTY 50``.

    Exchange and tradingsymbol are upper-cased (Kite's are all upper case), surrounding
    whitespace is dropped and runs of inner spaces collapse to one.
    """
    if isinstance(value, Symbol):
        return value
    if not isinstance(value, str):
        raise InvalidSymbol(value, f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidSymbol(value, "it is empty")
    if text.count(":") > 1:
        raise InvalidSymbol(value, "it has more than one ':'")
    if ":" in text:
        exchange, tradingsymbol = (part.strip().upper() for part in text.split(":"))
        if not exchange:
            raise InvalidSymbol(value, "the exchange before ':' is empty")
    else:
        exchange, tradingsymbol = default_exchange.upper(), text.upper()
    if exchange not in EXCHANGES:
        raise InvalidSymbol(value, f"unknown exchange {exchange!r} (valid: {', '.join(EXCHANGES)})")
    tradingsymbol = " ".join(tradingsymbol.split())
    if not tradingsymbol:
        raise InvalidSymbol(value, "the tradingsymbol after ':' is empty")
    if len(tradingsymbol) > MAX_TRADINGSYMBOL_LENGTH:
        raise InvalidSymbol(
            value, f"the tradingsymbol is longer than {MAX_TRADINGSYMBOL_LENGTH} characters"
        )
    if not _TRADINGSYMBOL.match(tradingsymbol):
        raise InvalidSymbol(
            value,
            "the tradingsymbol may only contain letters, digits, spaces and & - _ . / ( ) "
            "and must start with a letter or digit",
        )
    return Symbol(exchange, tradingsymbol)
