"""Historical candles from the model's one-minute bars, and the request parameters.

Every interval is built from the same one-minute bars (which the model derives from its
per-second path), so candles of all intervals agree with each other and with the ticks.
Intraday candles are labelled by their start on a grid aligned to 09:15 IST; day candles
at 00:00 IST. The candle in progress at "now" is returned as it stands (Kite does the
same), and nothing after "now" exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np

from market_bridge.kite.models import IST
from market_bridge.kite.simulator.model import BLOCK, MarketModel, Prefix, series
from market_bridge.kite.simulator.noise import I64Array
from market_bridge.kite.simulator.sessions import ist_date, ist_midnight
from market_bridge.market.timeframes import SESSION_ANCHOR, TIMEFRAMES, Timeframe

KITE_INTERVALS: dict[str, Timeframe] = {tf.kite_interval: tf for tf in TIMEFRAMES.values()}
_ANCHOR_SECONDS = SESSION_ANCHOR.hour * 3600 + SESSION_ANCHOR.minute * 60
_IST_OFFSET = 19_800


class CandleRequestError(ValueError):
    """A historical request Kite would refuse with an InputException (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class CandleRequest:
    token: int
    timeframe: Timeframe
    start: int  # epoch, inclusive (candle labels >= start)
    end: int  # epoch, inclusive (a candle starting exactly at ``to`` is returned)
    with_oi: bool


def parse_kite_time(value: str | None, name: str, end_of_day: bool = False) -> datetime:
    """``yyyy-mm-dd hh:mm:ss`` or ``yyyy-mm-dd`` (IST wall clock); ISO forms and offsets too.

    A bare date as ``to`` means the end of that day (so from=to=date returns the day).
    """
    if not value or not value.strip():
        raise CandleRequestError(f"missing or empty field `{name}`")
    text = value.strip().replace("+0530", "+05:30")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CandleRequestError(f"invalid `{name}` date: {value!r}") from None
    if len(text) == 10 and end_of_day:
        parsed = datetime.combine(parsed.date(), time(23, 59, 59))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=IST)
    return parsed.astimezone(IST)


def parse_request(
    token: int, interval: str, from_: str | None, to: str | None, oi: str | None
) -> CandleRequest:
    timeframe = KITE_INTERVALS.get(interval)
    if timeframe is None:
        raise CandleRequestError(f"invalid interval: {interval}")
    start = parse_kite_time(from_, "from")
    end = parse_kite_time(to, "to", end_of_day=True)
    if end < start:
        raise CandleRequestError("from date cannot be after to date")
    if (end.date() - start.date()).days > timeframe.max_days_per_request:
        raise CandleRequestError(
            f"interval exceeds max limit: {timeframe.max_days_per_request} days"
        )
    with_oi = (oi or "0").strip().lower() in ("1", "true")
    return CandleRequest(token, timeframe, int(start.timestamp()), int(end.timestamp()), with_oi)


@dataclass(slots=True)
class Bars:
    """OHLCV(+OI) bars: labels in epoch seconds, prices in ticks."""

    label: I64Array
    open: I64Array
    high: I64Array
    low: I64Array
    close: I64Array
    volume: I64Array
    oi: I64Array

    def __len__(self) -> int:
        return len(self.label)


def _concat(parts: list[Bars]) -> Bars:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Bars(empty, empty, empty, empty, empty, empty, empty)
    return Bars(*(np.concatenate([getattr(p, f) for p in parts]) for f in Bars.__slots__))


def minute_bars(model: MarketModel, token: int, first: date, last: date, now: int) -> Bars:
    """One-minute bars of every session from ``first`` to ``last``, up to second ``now``."""
    parts: list[Bars] = []
    for window in model.session.windows_between(first, min(last, ist_date(now))):
        if window.open_epoch > now:
            continue
        plan = model.plan(token, window.day)
        assert plan is not None
        labels = window.open_epoch + BLOCK * np.arange(plan.blocks, dtype=np.int64)
        done = min(plan.blocks, (now - window.open_epoch + 1) // BLOCK)  # complete minutes
        bars = plan.bars
        parts.append(
            Bars(
                labels[:done],
                bars["open"][:done],
                bars["high"][:done],
                bars["low"][:done],
                bars["close"][:done],
                bars["volume"][:done],
                bars["oi"][:done],
            )  # fmt: skip
        )
        if done < plan.blocks:
            # The minute in progress: the same series the live ticks come from, cut at now.
            k0 = done * BLOCK
            upto = now - window.open_epoch - k0 + 1
            s = series(plan, k0, k0 + upto, plan.prefix(done) if done else Prefix())
            one = np.ones(1, dtype=np.int64)
            parts.append(
                Bars(
                    labels[done : done + 1],
                    s.price[:1],
                    s.price.max() * one,
                    s.price.min() * one,
                    s.price[-1:],
                    s.qty.sum() * one,
                    s.oi[-1:],
                )  # fmt: skip
            )
    return _concat(parts)


def aggregate(minutes: Bars, timeframe: Timeframe) -> Bars:
    """Minute bars into ``timeframe`` bars (09:15-aligned; day bars at 00:00 IST)."""
    if len(minutes) == 0:
        return minutes
    day_start = (minutes.label + _IST_OFFSET) // 86_400 * 86_400 - _IST_OFFSET
    if timeframe.is_intraday:
        step = timeframe.minutes * 60
        anchor = day_start + _ANCHOR_SECONDS
        label = anchor + (minutes.label - anchor) // step * step
    else:
        label = day_start
    if timeframe.minutes == 1:
        return minutes
    starts = np.concatenate([[0], np.flatnonzero(np.diff(label)) + 1])
    ends = np.concatenate([starts[1:], [len(label)]]) - 1
    return Bars(
        label[starts],
        minutes.open[starts],
        np.maximum.reduceat(minutes.high, starts),
        np.minimum.reduceat(minutes.low, starts),
        minutes.close[ends],
        np.add.reduceat(minutes.volume, starts),
        minutes.oi[ends],
    )


def candles(model: MarketModel, req: CandleRequest, now: int) -> Bars:
    """The candles Kite would return for ``req`` when the clock reads ``now``."""
    first = ist_date(req.start)
    last = ist_date(req.end) + timedelta(days=1)  # a bar labelled late on ``to`` may run past
    bars = aggregate(minute_bars(model, req.token, first, last, now), req.timeframe)
    if req.timeframe.is_intraday:
        keep = (bars.label >= req.start) & (bars.label <= req.end)
    else:
        keep = (bars.label >= ist_midnight(first)) & (bars.label <= ist_midnight(ist_date(req.end)))
    return Bars(*(getattr(bars, f)[keep] for f in Bars.__slots__))


def _number(value: float) -> float | int:
    # Kite writes whole prices as integers (1705, not 1705.0).
    return int(value) if value.is_integer() else value


def candle_rows(bars: Bars, tick_wire: int, divisor: float, with_oi: bool) -> list[list[object]]:
    """Kite's JSON rows: ``[iso time +0530, open, high, low, close, volume(, oi)]``."""
    rows: list[list[object]] = []
    prices = [
        [_number(v) for v in (getattr(bars, f) * tick_wire / divisor).tolist()]
        for f in ("open", "high", "low", "close")
    ]
    volume = bars.volume.tolist()
    oi = bars.oi.tolist()
    day_text: dict[int, str] = {}
    for i, label in enumerate(bars.label.tolist()):
        local = label + _IST_OFFSET
        day = local // 86_400
        text = day_text.get(day)
        if text is None:
            text = day_text[day] = date.fromordinal(719_163 + day).isoformat()
        secs = local % 86_400
        stamp = f"{text}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}+0530"
        row: list[object] = [
            stamp,
            prices[0][i],
            prices[1][i],
            prices[2][i],
            prices[3][i],
            volume[i],
        ]
        if with_oi:
            row.append(oi[i])
        rows.append(row)
    return rows
