"""The instruments table: Kite's dump in, symbol <-> token resolution out.

Everything that needs a token for a symbol (collectors, backfill) or a symbol for a token
(the tick writer) goes through ``InstrumentIndex``, loaded from ``md.instruments``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import psycopg


@dataclass(frozen=True, slots=True)
class Instrument:
    instrument_token: int
    exchange_token: int | None
    tradingsymbol: str
    name: str
    last_price: float
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str
    segment: str
    exchange: str

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


class UnknownInstrument(LookupError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"unknown instrument {what!r}: not in md.instruments "
            "(run the instruments sync: `market-bridge instruments sync`)"
        )


def _num(value: object, cast: type) -> object:
    text = "" if value is None else str(value).strip()
    return cast(text) if text else cast(0)


def parse_instruments_csv(data: bytes | str) -> list[Instrument]:
    """Parse Kite's instruments dump (the 12-column CSV)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    out: list[Instrument] = []
    for row in csv.DictReader(io.StringIO(text.strip())):
        out.append(from_mapping(row))
    return out


def from_mapping(row: Mapping[str, object]) -> Instrument:
    """From a CSV row or a kiteconnect ``instruments()`` dict."""
    expiry_raw = row.get("expiry")
    expiry: date | None
    if isinstance(expiry_raw, date):
        expiry = expiry_raw
    elif isinstance(expiry_raw, str) and len(expiry_raw) == 10:
        expiry = date.fromisoformat(expiry_raw)
    else:
        expiry = None
    exch_tok = row.get("exchange_token")
    return Instrument(
        instrument_token=int(_num(row["instrument_token"], int)),  # type: ignore[call-overload]
        exchange_token=int(str(exch_tok)) if exch_tok not in (None, "") else None,
        tradingsymbol=str(row["tradingsymbol"]),
        name=str(row.get("name") or ""),
        last_price=float(_num(row.get("last_price"), float)),  # type: ignore[arg-type]
        expiry=expiry,
        strike=float(_num(row.get("strike"), float)),  # type: ignore[arg-type]
        tick_size=float(_num(row.get("tick_size"), float)),  # type: ignore[arg-type]
        lot_size=int(_num(row.get("lot_size"), int)),  # type: ignore[call-overload]
        instrument_type=str(row.get("instrument_type") or ""),
        segment=str(row.get("segment") or ""),
        exchange=str(row["exchange"]),
    )


_UPSERT = """
INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token, exchange_token, name,
    last_price, expiry, strike, tick_size, lot_size, instrument_type, segment, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (exchange, tradingsymbol) DO UPDATE SET
    instrument_token = EXCLUDED.instrument_token, exchange_token = EXCLUDED.exchange_token,
    name = EXCLUDED.name, last_price = EXCLUDED.last_price, expiry = EXCLUDED.expiry,
    strike = EXCLUDED.strike, tick_size = EXCLUDED.tick_size, lot_size = EXCLUDED.lot_size,
    instrument_type = EXCLUDED.instrument_type, segment = EXCLUDED.segment,
    updated_at = now()
"""


def upsert_instruments(conn: psycopg.Connection, instruments: Iterable[Instrument]) -> int:
    rows = [
        (i.exchange, i.tradingsymbol, i.instrument_token, i.exchange_token, i.name,
         i.last_price, i.expiry, i.strike, i.tick_size, i.lot_size, i.instrument_type,
         i.segment)
        for i in instruments
    ]
    with conn.cursor() as cur:
        cur.executemany(_UPSERT, rows)
    conn.commit()
    return len(rows)


class InstrumentIndex:
    """In-memory symbol <-> token map over a snapshot of md.instruments."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_key: dict[str, Instrument] = {}
        self._by_token: dict[int, Instrument] = {}
        for inst in instruments:
            self._by_key[inst.key] = inst
            # A token can be reused after expiry: keep the unexpired / latest listing.
            prev = self._by_token.get(inst.instrument_token)
            if prev is None or (prev.expiry or date.min) <= (inst.expiry or date.max):
                self._by_token[inst.instrument_token] = inst

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def load(cls, conn: psycopg.Connection) -> InstrumentIndex:
        rows = conn.execute(
            """SELECT instrument_token, exchange_token, tradingsymbol, name, last_price,
                      expiry, strike, tick_size, lot_size, instrument_type, segment, exchange
                 FROM md.instruments"""
        ).fetchall()
        return cls(
            Instrument(int(r[0]), r[1], r[2], r[3] or "", r[4] or 0.0, r[5], r[6] or 0.0,
                       r[7] or 0.0, r[8] or 0, r[9] or "", r[10] or "", r[11])
            for r in rows
        )

    def by_token(self, token: int) -> Instrument:
        try:
            return self._by_token[token]
        except KeyError:
            raise UnknownInstrument(str(token)) from None

    def get_token(self, token: int) -> Instrument | None:
        return self._by_token.get(token)

    def by_symbol(self, symbol: str) -> Instrument:
        """``RELIANCE`` means ``NSE:RELIANCE``; ``EXCHANGE:TRADINGSYMBOL`` otherwise."""
        key = symbol.strip()
        if ":" not in key:
            key = f"NSE:{key}"
        exch, _, ts = key.partition(":")
        inst = self._by_key.get(f"{exch.upper()}:{ts.upper()}") or self._by_key.get(
            f"{exch.upper()}:{ts}"
        )
        if inst is None:
            raise UnknownInstrument(symbol)
        return inst

    def resolve(self, symbols: Sequence[str]) -> tuple[list[Instrument], list[str]]:
        """Known instruments in order, and the symbols that are unknown."""
        found: list[Instrument] = []
        unknown: list[str] = []
        for s in symbols:
            try:
                found.append(self.by_symbol(s))
            except UnknownInstrument:
                unknown.append(s)
        return found, unknown
