"""Predefined watchlists, lookups, merging and the dynamic movers lists."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_bridge.market.symbols import InvalidSymbol, Symbol, parse_symbol
from market_bridge.watchlists import (
    DynamicWatchlistUnresolved,
    UnknownCategory,
    UnknownWatchlist,
    all_watchlists,
    by_category,
    catalog,
    categories,
    compute_movers,
    get_watchlist,
    merge_watchlists,
    watchlist_names,
)

INDEX = ["NIFTY50", "BANKNIFTY", "NIFTYNEXT50", "NIFTYMIDCAP50"]
MOVERS = ["TOP_GAINERS", "TOP_LOSERS", "MOST_ACTIVE"]
SECTORS = ["IT", "PHARMA", "AUTO", "METAL", "ENERGY", "FMCG", "REALTY", "MEDIA"]


# ---- symbols ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "exchange", "tradingsymbol", "display"),
    [
        ("RELIANCE", "NSE", "RELIANCE", "RELIANCE"),
        ("reliance", "NSE", "RELIANCE", "RELIANCE"),
        ("nse:reliance", "NSE", "RELIANCE", "RELIANCE"),
        ("BSE:SENSEX", "BSE", "SENSEX", "BSE:SENSEX"),
        ("NSE:NIFTY 50", "NSE", "NIFTY 50", "NIFTY 50"),
        (" nse : nifty   bank ", "NSE", "NIFTY BANK", "NIFTY BANK"),
        ("M&M", "NSE", "M&M", "M&M"),
        ("BAJAJ-AUTO", "NSE", "BAJAJ-AUTO", "BAJAJ-AUTO"),
        ("NFO:NIFTY24JAN21500CE", "NFO", "NIFTY24JAN21500CE", "NFO:NIFTY24JAN21500CE"),
    ],
)
def test_parse_symbol(text: str, exchange: str, tradingsymbol: str, display: str) -> None:
    s = parse_symbol(text)
    assert s == Symbol(exchange, tradingsymbol)
    assert str(s) == f"{exchange}:{tradingsymbol}"
    assert s.display == display
    assert parse_symbol(s.display) == s == parse_symbol(str(s))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("XYZ:RELIANCE", "unknown exchange 'XYZ'"),
        ("NSE:", "tradingsymbol after ':' is empty"),
        (":RELIANCE", "exchange before ':' is empty"),
        ("NSE:A:B", "more than one ':'"),
        ("RELI;ANCE", "may only contain"),
        ("A" * 60, "longer than"),
    ],
)
def test_bad_symbols_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidSymbol, match=problem) as info:
        parse_symbol(text)
    assert isinstance(info.value, ValueError)
    assert "EXCHANGE:TRADINGSYMBOL" in str(info.value)


# ---- static lists ----------------------------------------------------------------------


def test_all_fifteen_lists_in_their_categories() -> None:
    assert watchlist_names() == INDEX + MOVERS + SECTORS
    assert categories() == ["index", "movers", "sectors"]
    assert [w.name for w in by_category("index")] == INDEX
    assert [w.name for w in by_category("MOVERS")] == MOVERS
    assert [w.name for w in by_category("sectors")] == SECTORS
    assert len(all_watchlists()) == 15


def test_lookup_is_case_insensitive() -> None:
    wl = get_watchlist(" nifty50 ")
    assert wl is get_watchlist("NIFTY50")
    assert (wl.name, wl.category, wl.dynamic, wl.index_symbol) == (
        "NIFTY50",
        "index",
        False,
        "NSE:NIFTY 50",
    )
    assert "RELIANCE" in wl.symbols and wl.description


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownWatchlist) as info:
        get_watchlist("NIFTY500")
    assert isinstance(info.value, ValueError)
    assert "NIFTY500" in str(info.value) and "BANKNIFTY" in str(info.value)
    with pytest.raises(UnknownCategory) as cat:
        by_category("crypto")
    assert isinstance(cat.value, ValueError)
    assert "index, movers, sectors" in str(cat.value)


def test_index_sizes_and_symbols_are_valid() -> None:
    sizes = {"NIFTY50": 50, "NIFTYNEXT50": 50, "NIFTYMIDCAP50": 50, "BANKNIFTY": 12, "IT": 10}
    for name, size in sizes.items():
        assert len(get_watchlist(name).symbols) == size, name
    # The NEXT 50 is by definition disjoint from the NIFTY 50.
    assert not set(get_watchlist("NIFTY50").symbols) & set(get_watchlist("NIFTYNEXT50").symbols)
    for wl in all_watchlists():
        assert len(set(wl.symbols)) == len(wl.symbols), wl.name
        for s in wl.symbols:
            assert parse_symbol(s).display == s
        assert wl.dynamic == (not wl.symbols)


def test_data_file_records_its_provenance() -> None:
    cat = catalog()
    assert isinstance(cat.as_of, date) and cat.as_of.year >= 2025
    assert "niftyindices" in cat.source.lower() or "nse" in cat.source.lower()


def test_merge_is_order_preserving_and_deduplicated() -> None:
    merged = merge_watchlists(["it", "NIFTY50", "IT"])
    it, nifty = get_watchlist("IT").symbols, get_watchlist("NIFTY50").symbols
    assert merged[: len(it)] == list(it)
    assert merged[len(it) :] == [s for s in nifty if s not in it]
    assert len(merged) == len(set(merged)) == len(set(it) | set(nifty))
    assert merge_watchlists([]) == []
    with pytest.raises(UnknownWatchlist):
        merge_watchlists(["IT", "NOPE"])


def test_dynamic_lists_need_resolving_before_merging() -> None:
    gainers = get_watchlist("top_gainers")
    assert gainers.dynamic and gainers.symbols == () and gainers.category == "movers"
    assert gainers.universe == ("NIFTY50", "NIFTYNEXT50")
    with pytest.raises(DynamicWatchlistUnresolved, match="compute_movers"):
        merge_watchlists(["IT", "TOP_GAINERS"])
    merged = merge_watchlists(
        ["TOP_GAINERS", "IT"], resolved={"top_gainers": ["NSE:TCS", "RELIANCE"]}
    )
    assert merged[:2] == ["TCS", "RELIANCE"] and merged.count("TCS") == 1


# ---- movers ----------------------------------------------------------------------------

LATEST = {
    "RELIANCE": (1100.0, 1000.0, 5_000),  # +10%
    "NSE:TCS": (3900.0, 4000.0, 9_000),  # -2.5%
    "INFY": (1530.0, 1500.0, 12_000),  # +2%
    "ITC": (400.0, 400.0, 50_000),  # flat
    "HDFCBANK": (1600.0, 1700.0, 1_000),  # -5.9%
    "ZEEL": (150.0, 100.0, 99_999_999),  # +50% but not in the NIFTY 50 / NEXT 50 universe
    "DLF": (800.0, 0.0, 3_000),  # no usable previous close
}


def test_top_gainers_and_losers() -> None:
    gainers = compute_movers("TOP_GAINERS", LATEST)
    assert gainers.symbols == ("RELIANCE", "INFY") and gainers.reason is None
    assert gainers.entries[0].change_percent == pytest.approx(10.0)
    assert gainers.universe_size == 100
    losers = compute_movers("top_losers", LATEST)
    assert losers.symbols == ("HDFCBANK", "TCS")


def test_most_active_by_volume() -> None:
    active = compute_movers("MOST_ACTIVE", LATEST)
    assert active.symbols == ("ITC", "INFY", "TCS", "RELIANCE", "DLF", "HDFCBANK")
    assert compute_movers("MOST_ACTIVE", LATEST, n=2).symbols == ("ITC", "INFY")


def test_movers_with_a_custom_universe() -> None:
    assert compute_movers("TOP_GAINERS", LATEST, universe=["ZEEL", "BSE:SENSEX"]).symbols == (
        "ZEEL",
    )


def test_empty_movers_say_why() -> None:
    none = compute_movers("TOP_GAINERS", {})
    assert none.symbols == () and none.reason and "no latest prices" in none.reason
    down = compute_movers("TOP_GAINERS", {"TCS": (90.0, 100.0, 10)})
    assert down.symbols == () and down.reason and "up" in down.reason
    with pytest.raises(ValueError, match="not a movers list"):
        compute_movers("NIFTY50", LATEST)


prices = st.floats(min_value=0.05, max_value=100_000, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(list(get_watchlist("NIFTY50").symbols)),
        st.tuples(
            prices, st.one_of(st.none(), prices), st.one_of(st.none(), st.integers(0, 10**9))
        ),
    ),
    n=st.integers(min_value=1, max_value=15),
)
def test_movers_properties(data: dict[str, tuple[float, float | None, int | None]], n: int) -> None:
    gainers = compute_movers("TOP_GAINERS", data, n=n)
    losers = compute_movers("TOP_LOSERS", data, n=n)
    active = compute_movers("MOST_ACTIVE", data, n=n)
    for result in (gainers, losers, active):
        assert len(result.entries) <= n
        assert set(result.symbols) <= set(data)
        assert (result.reason is None) == bool(result.entries)
    changes = [m.change_percent or 0.0 for m in gainers.entries]
    assert all(m.change_percent is not None and m.change_percent > 0 for m in gainers.entries)
    assert changes == sorted(changes, reverse=True)
    assert all(m.change_percent is not None and m.change_percent < 0 for m in losers.entries)
    assert not set(gainers.symbols) & set(losers.symbols)
    volumes = [m.volume or 0 for m in active.entries]
    assert volumes == sorted(volumes, reverse=True) and all(v > 0 for v in volumes)
