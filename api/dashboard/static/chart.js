// Chart page: candlesticks + volume + VWAP for one symbol and timeframe.
//
// History: GET /intraday/bars (the latest HISTORY bars) and GET /intraday/vwap (from the
// first of them). Live: /stream/ws bar messages of this timeframe update or add bars
// (forming, final, revised); ticks move the forming candle's close/high/low (and open a
// provisional candle when they fall in the next period, until its bar message arrives).
// The VWAP line continues from the last REST point with the live bars' volume, reset at IST
// midnight, exactly as the API computes it. The container exposes data-state,
// data-bars-count, data-last-time and data-last-close (used by tests and handy to inspect).

import { api } from "./api.js";
import { $, bucketStart, chartTime, el, enc, fmtChartTime, fmtCompact, fmtPrice, normSymbol } from "./util.js";

const HISTORY = 1000;
const VISIBLE = 160;
const UP = "#26a69a";
const DOWN = "#ef5350";

export class ChartPage {
  constructor(root, { LWC, stream, config, libraryError }) {
    this.root = root;
    this.stream = stream;
    this.LWC = LWC;
    this.symbol = null;
    this.timeframe = "1m";
    this.bars = []; // {time, open, high, low, close, volume}, ascending
    this.loadSeq = 0;
    this.buffer = null; // live messages that arrive while history loads
    this.hovering = false;
    this.vw = null; // {day, pv, vol, after} the cumulative VWAP base; live: Map time -> {pv, vol}
    this.live = new Map();
    this.feedNote = "";

    this.form = $("#chart-form", root);
    this.symbolInput = $("#chart-symbol", root);
    this.tfSelect = $("#chart-timeframe", root);
    this.container = $("#chart", root);
    this.legend = $("#chart-legend", root);
    this.message = $("#chart-message", root);

    for (const tf of config.timeframes) this.tfSelect.append(el("option", { value: tf, text: tf }));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.show(this.symbolInput.value, this.tfSelect.value);
    });
    this.tfSelect.addEventListener("change", () => this.show(this.symbolInput.value, this.tfSelect.value));

    if (!LWC) {
      this.container.dataset.state = "no-library";
      this._message(libraryError || "the chart library is missing", true);
      return;
    }
    this._createChart();
    stream.on((m) => this._onMessage(m));
    stream.onState((s) => {
      // After a reconnect, live messages were missed: reload the history.
      if (s.state === "open" && s.connects > 1 && this.symbol) this.reload();
    });
  }

  _createChart() {
    const { createChart, CandlestickSeries, HistogramSeries, LineSeries, CrosshairMode } = this.LWC;
    this.chart = createChart(this.container, {
      autoSize: true,
      layout: { background: { color: "#131722" }, textColor: "#c9d1d9", fontFamily: "system-ui, sans-serif" },
      grid: { vertLines: { color: "#1f2633" }, horzLines: { color: "#1f2633" } },
      crosshair: { mode: CrosshairMode.Normal },
      rightPriceScale: { borderColor: "#2a3142" },
      timeScale: { borderColor: "#2a3142", timeVisible: true, secondsVisible: false },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "", lastValueVisible: false, priceLineVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    this.vwapLine = this.chart.addSeries(LineSeries, {
      color: "#f0b429", lineWidth: 2, priceLineVisible: false, lastValueVisible: true, crosshairMarkerVisible: false,
      title: "VWAP",
    });
    this.chart.subscribeCrosshairMove((param) => {
      const bar = param.time !== undefined ? param.seriesData.get(this.candles) : null;
      this.hovering = Boolean(bar);
      if (bar) {
        const vol = param.seriesData.get(this.volume);
        const vwap = param.seriesData.get(this.vwapLine);
        this._legend({ ...bar, volume: vol ? vol.value : null }, vwap ? vwap.value : null);
      } else {
        this._legendLast();
      }
    });
  }

  // ---- loading ----------------------------------------------------------------------

  show(rawSymbol, timeframe) {
    const symbol = normSymbol(rawSymbol);
    if (!symbol) return;
    timeframe = timeframe || this.timeframe;
    if (symbol === this.symbol && timeframe === this.timeframe && this.container.dataset.state === "ready") return;
    localStorage.setItem("mb.chart", JSON.stringify({ symbol, timeframe }));
    this.symbolInput.value = symbol;
    this.tfSelect.value = timeframe;
    if (!this.LWC) return;
    if (symbol !== this.symbol) {
      if (this.symbol) this.stream.release([this.symbol]);
      this.stream.acquire([symbol]);
    }
    this.symbol = symbol;
    this.timeframe = timeframe;
    this.reload();
  }

  async reload() {
    const seq = ++this.loadSeq;
    const { symbol, timeframe } = this;
    this.buffer = [];
    this.feedNote = "";
    this.container.dataset.state = "loading";
    this._message(`loading ${symbol} ${timeframe}…`);
    try {
      const q = `timeframe=${timeframe}&limit=${HISTORY}`;
      const data = await api(`/intraday/bars/${enc(symbol)}?${q}`);
      if (seq !== this.loadSeq) return;
      let vwap = null;
      if (data.bars.length) {
        const from = encodeURIComponent(data.bars[0].timestamp);
        vwap = await api(`/intraday/vwap/${enc(symbol)}?${q}&from=${from}`).catch(() => null);
        if (seq !== this.loadSeq) return;
      }
      this._setHistory(data.bars, vwap);
      const pending = this.buffer;
      this.buffer = null;
      for (const m of pending) this._apply(m);
      this.container.dataset.state = "ready";
      this._message(data.bars.length ? "" : `no ${timeframe} bars stored for ${symbol} yet; live bars will appear here`);
    } catch (err) {
      if (seq !== this.loadSeq) return;
      this.buffer = null;
      this.container.dataset.state = "error";
      this._message(`${symbol}: ${err.message}`, true);
    }
  }

  // Retry after an outage (called when the API is back).
  retryIfFailed() {
    if (this.symbol && this.container.dataset.state === "error") this.reload();
  }

  _setHistory(rows, vwap) {
    this.bars = rows.map((b) => ({
      time: chartTime(b.timestamp), open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume,
    }));
    this.candles.setData(this.bars.map(candle));
    this.volume.setData(this.bars.map(volumeBar));
    const points = vwap && vwap.series ? vwap.series.filter((p) => p.vwap !== null) : [];
    this.vwapLine.setData(points.map((p) => ({ time: chartTime(p.timestamp), value: p.vwap })));
    const last = points[points.length - 1];
    const lastBar = this.bars[this.bars.length - 1];
    this.live.clear();
    if (last) {
      const t = chartTime(last.timestamp);
      this.vw = { day: dayOf(t), pv: last.vwap * last.cumulative_volume, vol: last.cumulative_volume, after: t };
    } else if (lastBar) {
      // No VWAP series (failed or no volume): continue only from the next IST day on.
      this.vw = { day: dayOf(lastBar.time), pv: 0, vol: 0, after: lastBar.time, unknown: true };
    } else {
      this.vw = null;
    }
    const n = this.bars.length;
    if (n) this.chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, n - VISIBLE), to: n + 3 });
    this._changed();
  }

  // ---- live -------------------------------------------------------------------------

  _onMessage(m) {
    if (!this.symbol || m.symbol !== this.symbol) {
      if (m.type === "unknown" && m.symbols && m.symbols.includes(this.symbol)) {
        this.feedNote = `${this.symbol} is not a known instrument: no live data`;
        this._changed();
      }
      return;
    }
    if (m.type !== "bar" && m.type !== "tick" && m.type !== "status") return;
    if (this.buffer) this.buffer.push(m);
    else this._apply(m);
  }

  _apply(m) {
    if (m.type === "bar" && m.data.timeframe === this.timeframe) this._applyBar(m.data);
    else if (m.type === "tick" && !m.snapshot) this._applyTick(m.data);
    else if (m.type === "status") {
      const d = m.data || {};
      this.feedNote = d.state === "feed_lost" ? `live feed lost at ${d.at || "?"} (${d.reason || "unknown"}): data may have a gap` : "";
      this._changed();
    }
  }

  _applyBar(d) {
    const bar = {
      time: chartTime(d.start || d.timestamp), open: d.open, high: d.high, low: d.low, close: d.close, volume: d.volume,
    };
    const last = this.bars[this.bars.length - 1];
    if (!last || bar.time > last.time) {
      this.bars.push(bar);
      this.candles.update(candle(bar));
      this.volume.update(volumeBar(bar));
    } else if (bar.time === last.time) {
      this.bars[this.bars.length - 1] = bar;
      this.candles.update(candle(bar));
      this.volume.update(volumeBar(bar));
    } else {
      const i = findIndex(this.bars, bar.time);
      if (i >= 0) {
        this.bars[i] = bar; // a revised final bar
        this.candles.update(candle(bar), true);
        this.volume.update(volumeBar(bar), true);
      } else {
        this.bars.splice(-findIndex(this.bars, bar.time) - 1, 0, bar);
        this.candles.setData(this.bars.map(candle));
        this.volume.setData(this.bars.map(volumeBar));
      }
    }
    this._applyVwap(bar.time, d);
    this._changed();
  }

  _applyTick(d) {
    if (d.price === null || d.price === undefined || !d.timestamp) return;
    const last = this.bars[this.bars.length - 1];
    if (!last) return;
    const start = bucketStart(chartTime(d.timestamp), this.timeframe);
    if (start < last.time) return; // late or stale: bar messages correct closed bars
    if (start === last.time) {
      last.close = d.price;
      last.high = Math.max(last.high, d.price);
      last.low = Math.min(last.low, d.price);
    } else {
      // The next period's first trade, before its forming bar message: a provisional candle.
      this.bars.push({ time: start, open: d.price, high: d.price, low: d.price, close: d.price, volume: 0 });
    }
    const bar = this.bars[this.bars.length - 1];
    this.candles.update(candle(bar));
    this.volume.update(volumeBar(bar));
    this._changed();
  }

  _applyVwap(t, d) {
    const day = dayOf(t);
    if (!this.vw || day > this.vw.day) {
      this.vw = { day, pv: 0, vol: 0, after: day - 1 };
      this.live.clear();
    }
    // Covered by the REST series, an older day, or a day whose start we do not know.
    if (this.vw.unknown || t <= this.vw.after || day !== this.vw.day) return;
    const price = d.vwap !== null && d.vwap !== undefined ? d.vwap : (d.high + d.low + d.close) / 3;
    this.live.set(t, { pv: price * (d.volume || 0), vol: d.volume || 0 });
    let pv = this.vw.pv;
    let vol = this.vw.vol;
    for (const [time, x] of [...this.live.entries()].sort((a, b) => a[0] - b[0])) {
      pv += x.pv;
      vol += x.vol;
      if (time < t || vol <= 0) continue;
      try {
        this.vwapLine.update({ time, value: pv / vol }, time < this._lastVwapTime());
      } catch (err) {
        console.warn("vwap update skipped", err);
      }
    }
  }

  _lastVwapTime() {
    const data = this.vwapLine.data();
    return data.length ? data[data.length - 1].time : -Infinity;
  }

  // ---- view -------------------------------------------------------------------------

  _changed() {
    const last = this.bars[this.bars.length - 1];
    const ds = this.container.dataset;
    ds.barsCount = String(this.bars.length);
    ds.lastTime = last ? String(last.time) : "";
    ds.lastClose = last ? String(last.close) : "";
    if (!this.hovering) this._legendLast();
    const note = $("#chart-feed", this.root);
    note.textContent = this.feedNote;
    note.hidden = !this.feedNote;
  }

  _legendLast() {
    const last = this.bars[this.bars.length - 1];
    const vw = this.vwapLine ? this.vwapLine.data() : [];
    this._legend(last || null, vw.length ? vw[vw.length - 1].value : null);
  }

  _legend(bar, vwap) {
    const set = (field, text, cls) => {
      const node = this.legend.querySelector(`[data-field="${field}"]`);
      node.textContent = text;
      if (cls !== undefined) node.className = cls;
    };
    set("symbol", this.symbol ? `${this.symbol} · ${this.timeframe}` : "");
    set("time", bar ? fmtChartTime(bar.time, true) : "");
    const cls = bar ? (bar.close >= bar.open ? "up" : "down") : "";
    for (const k of ["open", "high", "low", "close"]) set(k, bar ? fmtPrice(bar[k]) : "–", cls);
    set("volume", bar && bar.volume !== null && bar.volume !== undefined ? fmtCompact(bar.volume) : "–");
    set("vwap", vwap !== null && vwap !== undefined ? fmtPrice(vwap) : "–");
  }

  _message(text, isError = false) {
    this.message.textContent = text;
    this.message.hidden = !text;
    this.message.classList.toggle("error", isError);
  }
}

function candle(b) {
  return { time: b.time, open: b.open, high: b.high, low: b.low, close: b.close };
}

function volumeBar(b) {
  return { time: b.time, value: b.volume || 0, color: b.close >= b.open ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)" };
}

function dayOf(t) {
  return Math.floor(t / 86400) * 86400;
}

// Index of time t in ascending bars, or -(insertion point) - 1.
function findIndex(bars, t) {
  let lo = 0;
  let hi = bars.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (bars[mid].time === t) return mid;
    if (bars[mid].time < t) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}
