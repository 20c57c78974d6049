"""The simulated instrument universe and its Kite instruments dump (CSV).

Every static watchlist symbol on NSE, the indices those lists mirror (plus INDIA VIX and
SENSEX), NIFTY/BANKNIFTY/RELIANCE futures and NIFTY/BANKNIFTY options around the money,
two BSE equities, an MCX and a CDS future. Tokens are Kite's where we know them; the rest
are derived from the tradingsymbol (``exchange_token * 256 + segment``), so the same
universe always gets the same tokens. Derivative contracts (expiries, strikes) follow the
reference date, like the real dump, which is regenerated every day.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from market_bridge.kite.codec import price_divisor
from market_bridge.kite.simulator.noise import stream_key, unit_int
from market_bridge.kite.simulator.prices import anchor_close

CSV_HEADER = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
    "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)  # fmt: skip

# Kite's segment ids (token & 0xff).
SEGMENT_IDS = {"NSE": 1, "NFO": 2, "CDS": 3, "BSE": 4, "BFO": 5, "BCD": 6, "MCX": 7, "INDICES": 9}

# Kite tokens we know (well-published ones); anything else is derived deterministically.
KNOWN_NSE_TOKENS: dict[str, int] = {
    "RELIANCE": 738561, "INFY": 408065, "TCS": 2953217, "HDFCBANK": 341249,
    "ICICIBANK": 1270529, "SBIN": 779521, "ITC": 424961, "AXISBANK": 1510401,
    "KOTAKBANK": 492033, "LT": 2939649, "HINDUNILVR": 356865, "BHARTIARTL": 2714625,
    "WIPRO": 969473, "TATASTEEL": 895745, "MARUTI": 2815745, "ASIANPAINT": 60417,
    "BAJFINANCE": 81153, "HCLTECH": 1850625, "SUNPHARMA": 857857, "TITAN": 897537,
    "ULTRACEMCO": 2952193, "NTPC": 2977281, "POWERGRID": 3834113, "ONGC": 633601,
    "COALINDIA": 5215745, "ADANIPORTS": 3861249, "ADANIENT": 6401, "M&M": 519937,
    "TECHM": 3465729, "NESTLEIND": 4598529, "JSWSTEEL": 3001089, "GRASIM": 315393,
    "DRREDDY": 225537, "CIPLA": 177665, "HINDALCO": 348929, "EICHERMOT": 232961,
    "BAJAJ-AUTO": 4267265, "HEROMOTOCO": 345089, "BRITANNIA": 140033, "DIVISLAB": 2800641,
    "INDUSINDBK": 1346049, "BPCL": 134657, "TATAPOWER": 877057, "BAJAJFINSV": 4268801,
    "APOLLOHOSP": 40193, "SBILIFE": 5582849, "HDFCLIFE": 119553, "TATACONSUM": 878593,
    "UPL": 2889473, "VEDL": 784129, "IOC": 415745, "GAIL": 1207553, "DLF": 3771393,
    "PNB": 2730497, "BANKBARODA": 1195009, "CANBK": 2763265, "FEDERALBNK": 261889,
    "IDFCFIRSTB": 2863105, "YESBANK": 3050241, "SAIL": 758529, "NMDC": 3924993,
    "ZEEL": 975873, "ASHOKLEY": 54273, "MRF": 582913, "LUPIN": 2672641, "AUROPHARMA": 70401,
    "BIOCON": 2911489, "PIDILITIND": 681985, "DABUR": 197633, "MARICO": 1041153,
    "COLPAL": 3876097, "GODREJCP": 2585345, "HAVELLS": 2513665, "SIEMENS": 806401,
    "BOSCHLTD": 558337, "BEL": 98049, "BHEL": 112129, "TVSMOTOR": 2170625,
    "SHREECEM": 794369,
}  # fmt: skip

# (exchange, tradingsymbol) -> (token, base price)
INDICES: dict[tuple[str, str], tuple[int | None, float]] = {
    ("NSE", "NIFTY 50"): (256265, 25_800.0),
    ("NSE", "NIFTY BANK"): (260105, 58_000.0),
    ("NSE", "INDIA VIX"): (264969, 12.0),
    ("NSE", "NIFTY IT"): (259849, 35_500.0),
    ("NSE", "NIFTY FIN SERVICE"): (257801, 27_000.0),
    ("NSE", "NIFTY NEXT 50"): (270857, 69_000.0),
    ("NSE", "NIFTY MIDCAP 50"): (260873, 16_500.0),
    ("NSE", "NIFTY PHARMA"): (262409, 22_500.0),
    ("NSE", "NIFTY AUTO"): (263433, 27_000.0),
    ("NSE", "NIFTY METAL"): (263689, 10_500.0),
    ("NSE", "NIFTY ENERGY"): (261641, 35_500.0),
    ("NSE", "NIFTY FMCG"): (261897, 55_500.0),
    ("NSE", "NIFTY REALTY"): (261129, 930.0),
    ("NSE", "NIFTY MEDIA"): (263945, 1_500.0),
    ("BSE", "SENSEX"): (265, 84_000.0),
}

# Rough price levels so the numbers look familiar; other symbols get a derived level.
BASE_PRICES: dict[str, float] = {
    "RELIANCE": 1480.0, "INFY": 1520.0, "TCS": 3050.0, "HDFCBANK": 990.0,
    "ICICIBANK": 1370.0, "SBIN": 950.0, "ITC": 405.0, "AXISBANK": 1230.0, "KOTAKBANK": 2100.0,
    "LT": 4000.0, "HINDUNILVR": 2450.0, "BHARTIARTL": 2050.0, "WIPRO": 245.0,
    "TATASTEEL": 170.0, "MARUTI": 16000.0, "BAJFINANCE": 1000.0, "MRF": 155000.0,
    "PAGEIND": 42000.0, "BOSCHLTD": 37000.0, "SHREECEM": 28000.0, "NESTLEIND": 1250.0,
    "IDEA": 9.5, "YESBANK": 22.0, "SUZLON": 55.0,
}  # fmt: skip

BSE_EQUITIES = (("RELIANCE", 500325), ("INFY", 500209))
NFO_FUTURE_UNDERLYINGS = (
    # tradingsymbol root, underlying (exchange, symbol), lot size
    ("NIFTY", ("NSE", "NIFTY 50"), 75),
    ("BANKNIFTY", ("NSE", "NIFTY BANK"), 35),
    ("RELIANCE", ("NSE", "RELIANCE"), 500),
)
OPTION_CHAINS = (
    # root, underlying, lot, strike step, strikes each side of the money, weekly expiry?
    ("NIFTY", ("NSE", "NIFTY 50"), 75, 50, 4, True),
    ("BANKNIFTY", ("NSE", "NIFTY BANK"), 35, 100, 2, False),
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKLY_MONTH = "123456789OND"  # NSE weekly option month codes
_TUESDAY = 1


@dataclass(frozen=True, slots=True)
class Instrument:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    expiry: date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str  # EQ, FUT, CE, PE (indices are EQ, as in Kite's dump)
    segment: str  # NSE, BSE, INDICES, NFO-FUT, NFO-OPT, MCX-FUT, CDS-FUT
    exchange: str  # NSE, BSE, NFO, MCX, CDS
    # model inputs, not in the dump
    base_price: float
    volatility: float  # daily, as a fraction
    last_price: float = 0.0

    @property
    def key(self) -> str:
        """Kite's quote key, ``EXCHANGE:TRADINGSYMBOL``."""
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def is_index(self) -> bool:
        return self.segment == "INDICES"

    @property
    def has_oi(self) -> bool:
        return self.instrument_type in ("FUT", "CE", "PE")

    @property
    def divisor(self) -> float:
        return price_divisor(self.instrument_token)

    @property
    def tick_wire(self) -> int:
        """The tick size in wire units (price x divisor), an integer."""
        return round(self.tick_size * self.divisor)

    def csv_row(self) -> list[str]:
        return [
            str(self.instrument_token), str(self.exchange_token), self.tradingsymbol, self.name,
            repr(float(self.last_price)), self.expiry.isoformat() if self.expiry else "",
            repr(float(self.strike)), repr(float(self.tick_size)), str(self.lot_size),
            self.instrument_type, self.segment, self.exchange,
        ]  # fmt: skip


class Universe:
    """The instruments by token and by ``EXCHANGE:TRADINGSYMBOL``."""

    def __init__(self, instruments: Sequence[Instrument], as_of: date) -> None:
        self.as_of = as_of
        self.instruments: tuple[Instrument, ...] = tuple(instruments)
        self.by_token = {i.instrument_token: i for i in self.instruments}
        self.by_key = {i.key: i for i in self.instruments}
        if len(self.by_token) != len(self.instruments):
            raise ValueError("duplicate instrument tokens in the universe")

    def __len__(self) -> int:
        return len(self.instruments)

    def __contains__(self, token: object) -> bool:
        return token in self.by_token

    def get(self, token: int) -> Instrument | None:
        return self.by_token.get(token)

    @cached_property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(sorted({i.exchange for i in self.instruments}))

    def csv(self, exchange: str | None = None) -> str:
        """The instruments dump: Kite's exact header, numeric cells never empty."""
        return instruments_csv(
            i for i in self.instruments if exchange is None or i.exchange == exchange
        )


def instruments_csv(instruments: Iterable[Instrument]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for inst in instruments:
        writer.writerow(inst.csv_row())
    return buf.getvalue()


# ---- building ---------------------------------------------------------------------------


def watchlist_universe() -> tuple[list[str], list[tuple[str, str]]]:
    """NSE equity symbols of every static watchlist, and the indices the lists mirror."""
    from market_bridge.market.symbols import parse_symbol
    from market_bridge.watchlists import all_watchlists

    equities: dict[str, None] = {}
    indices: dict[tuple[str, str], None] = {}
    for wl in all_watchlists():
        if wl.index_symbol:
            sym = parse_symbol(wl.index_symbol)
            indices[(sym.exchange, sym.tradingsymbol)] = None
        for raw in wl.symbols:
            sym = parse_symbol(raw)
            if sym.exchange == "NSE":
                equities[sym.tradingsymbol] = None
    return list(equities), list(indices)


class _TokenAllocator:
    """Known tokens first; others from a hash of the symbol, probing past collisions."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def take(self, token: int) -> int:
        if token in self.used:
            raise ValueError(f"instrument token {token} assigned twice")
        self.used.add(token)
        return token

    def derive(self, key: str, segment_id: int, low: int, high: int) -> int:
        h = _hash_text(key)
        exchange_token = low + h % (high - low)
        while exchange_token * 256 + segment_id in self.used:
            exchange_token = low + (exchange_token + 1 - low) % (high - low)
        return self.take(exchange_token * 256 + segment_id)


def _hash_text(text: str) -> int:
    # Not Python's hash(): that one is salted per process.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _derived_base(symbol: str) -> float:
    # Log-uniform 80..4000 from the symbol: stable across runs and seeds.
    u = unit_int(stream_key(_hash_text(symbol)), 0)
    return round(80.0 * (50.0**u), 1)


def last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def monthly_expiries(as_of: date, count: int, weekday: int = _TUESDAY) -> list[date]:
    """The next ``count`` monthly expiries (last ``weekday`` of the month) on or after as_of."""
    out: list[date] = []
    year, month = as_of.year, as_of.month
    while len(out) < count:
        expiry = last_weekday_of_month(year, month, weekday)
        if expiry >= as_of:
            out.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _fut_symbol(root: str, expiry: date) -> str:
    return f"{root}{expiry:%y}{_MONTHS[expiry.month - 1]}FUT"


def _opt_symbol(root: str, expiry: date, strike: int, kind: str, monthly: bool) -> str:
    if monthly:
        return f"{root}{expiry:%y}{_MONTHS[expiry.month - 1]}{strike}{kind}"
    return f"{root}{expiry:%y}{_WEEKLY_MONTH[expiry.month - 1]}{expiry:%d}{strike}{kind}"


def build_universe(as_of: date, seed: int = 0) -> Universe:
    """The simulator's instruments for the trading day ``as_of``.

    ``seed`` only moves the at-the-money strikes (they follow the simulated prices).
    """
    equities, index_keys = watchlist_universe()
    for extra in (("NSE", "INDIA VIX"), ("NSE", "NIFTY FIN SERVICE"), ("BSE", "SENSEX")):
        if extra not in index_keys:
            index_keys.append(extra)
    alloc = _TokenAllocator()
    out: list[Instrument] = []

    # Known tokens are reserved up front so derived ones never collide with them.
    for sym in equities:
        if sym in KNOWN_NSE_TOKENS:
            alloc.take(KNOWN_NSE_TOKENS[sym])
    for key in index_keys:
        known = INDICES.get(key, (None, 0.0))[0]
        if known is not None:
            alloc.take(known)

    for key in index_keys:
        exchange, symbol = key
        known, base = INDICES.get(key, (None, 0.0))
        token = known if known is not None else alloc.derive(f"IDX:{symbol}", 9, 1100, 2000)
        out.append(
            Instrument(
                token,
                token >> 8,
                symbol,
                symbol,
                None,
                0.0,
                0.05,
                1,
                "EQ",
                "INDICES",
                exchange,
                base_price=base or _derived_base(symbol) * 10,
                volatility=0.04 if symbol == "INDIA VIX" else 0.009,
            )
        )
    for sym in equities:
        token = KNOWN_NSE_TOKENS.get(sym) or alloc.derive(f"NSE:{sym}", 1, 20_000, 100_000)
        out.append(
            Instrument(
                token,
                token >> 8,
                sym,
                sym,
                None,
                0.0,
                0.05,
                1,
                "EQ",
                "NSE",
                "NSE",
                base_price=BASE_PRICES.get(sym) or _derived_base(sym),
                volatility=0.015,
            )
        )
    for sym, exchange_token in BSE_EQUITIES:
        token = alloc.take(exchange_token * 256 + SEGMENT_IDS["BSE"])
        out.append(
            Instrument(
                token,
                exchange_token,
                sym,
                sym,
                None,
                0.0,
                0.05,
                1,
                "EQ",
                "BSE",
                "BSE",
                base_price=BASE_PRICES.get(sym) or _derived_base(sym),
                volatility=0.015,
            )
        )
    out.extend(_derivatives(as_of, seed, alloc, {(i.exchange, i.tradingsymbol): i for i in out}))
    return Universe(out, as_of)


def _derivatives(
    as_of: date, seed: int, alloc: _TokenAllocator, spot: dict[tuple[str, str], Instrument]
) -> list[Instrument]:
    out: list[Instrument] = []

    def level(key: tuple[str, str]) -> float:
        u = spot[key]
        return anchor_close(seed, u.instrument_token, u.base_price, u.volatility, as_of)

    def add(symbol: str, name: str, expiry: date, strike: float, kind: str, lot: int,
            exchange: str, tick: float, base: float, vol: float) -> None:  # fmt: skip
        seg_name = {"NFO": "NFO", "MCX": "MCX", "CDS": "CDS"}[exchange]
        token = alloc.derive(f"{exchange}:{symbol}", SEGMENT_IDS[seg_name], 35_000, 1_000_000)
        base = round(max(tick, base) / tick) * tick
        segment = f"{exchange}-{'FUT' if kind == 'FUT' else 'OPT'}"
        out.append(
            Instrument(
                token,
                token >> 8,
                symbol,
                name,
                expiry,
                strike,
                tick,
                lot,
                kind,
                segment,
                exchange,
                base_price=base,
                volatility=vol,
                last_price=round(base, 4),
            )
        )

    months = monthly_expiries(as_of, 2)
    for root, underlying, lot in NFO_FUTURE_UNDERLYINGS:
        spot_price = level(underlying)
        for n, expiry in enumerate(months if root == "NIFTY" else months[:1]):
            add(_fut_symbol(root, expiry), root, expiry, 0.0, "FUT", lot, "NFO", 0.05,
                spot_price * (1.004 + 0.005 * n), 0.011)  # fmt: skip
    for root, underlying, lot, step, width, weekly in OPTION_CHAINS:
        spot_price = level(underlying)
        expiry = months[0]
        if weekly:
            expiry = as_of + timedelta(days=(_TUESDAY - as_of.weekday()) % 7)
        monthly = expiry == months[0]
        atm = round(spot_price / step) * step
        days_left = max(1, (expiry - as_of).days)
        time_value = spot_price * 0.004 * (days_left**0.5)
        for i in range(-width, width + 1):
            strike = atm + i * step
            for kind in ("CE", "PE"):
                intrinsic = max(0.0, spot_price - strike if kind == "CE" else strike - spot_price)
                add(_opt_symbol(root, expiry, strike, kind, monthly), root, expiry,
                    float(strike), kind, lot, "NFO", 0.05, intrinsic + time_value, 0.12)  # fmt: skip
    crude_expiry = _mcx_crude_expiry(as_of)
    add(_fut_symbol("CRUDEOIL", crude_expiry), "CRUDEOIL", crude_expiry, 0.0, "FUT", 100, "MCX",
        1.0, 5_300.0, 0.018)  # fmt: skip
    usd_expiry = _cds_expiry(as_of)
    add(_fut_symbol("USDINR", usd_expiry), "USDINR", usd_expiry, 0.0, "FUT", 1, "CDS", 0.0025,
        88.7, 0.002)  # fmt: skip
    return out


def _business_days_back(day: date, n: int) -> date:
    while n > 0 or day.weekday() >= 5:
        if day.weekday() < 5:
            n -= 1
        day -= timedelta(days=1)
    return day


def _mcx_crude_expiry(as_of: date) -> date:
    """Around the 19th (a weekday on or before it); next month's once this one has passed."""
    for months_ahead in (0, 1, 2):
        year, month = divmod(as_of.month - 1 + months_ahead, 12)
        day = date(as_of.year + year, month + 1, 19)
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        if day >= as_of:
            return day
    raise AssertionError("unreachable")


def _cds_expiry(as_of: date) -> date:
    """Two business days before the month's last business day."""
    for months_ahead in (0, 1, 2):
        year, month = divmod(as_of.month - 1 + months_ahead, 12)
        nxt = date(as_of.year + year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        while last.weekday() >= 5:
            last -= timedelta(days=1)
        expiry = _business_days_back(last - timedelta(days=1), 1)
        if expiry >= as_of:
            return expiry
    raise AssertionError("unreachable")
