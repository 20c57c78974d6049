// Watchlist page: a live table (LTP, change %, volume) for any watchlist, and the movers.
//
// Members: GET /watchlists/:name (a movers list shows its current members). Starting
// values: GET /dashboard/snapshot (latest stored 1m close vs the previous day's close, the
// day's volume). Then /stream/ws ticks (price, change_percent, cumulative volume) and
// stats (last_price, change_percent, volume) update the rows. Movers lists
// (TOP_GAINERS, TOP_LOSERS, MOST_ACTIVE) refresh every 30 s while the page is shown.

import { api } from "./api.js";
import { $, el, enc, flash, fmtClock, fmtCompact, fmtPct, fmtPrice, signClass } from "./util.js";

const MOVERS = ["TOP_GAINERS", "TOP_LOSERS", "MOST_ACTIVE"];
const MOVERS_EVERY_MS = 30000;
const SNAPSHOT_CHUNK = 200;

export class WatchlistPage {
  constructor(root, { stream, navigate }) {
    this.root = root;
    this.stream = stream;
    this.navigate = navigate;
    this.name = null;
    this.symbols = [];
    this.rows = new Map(); // symbol -> {tr, cells}
    this.seq = 0;
    this.moversTimer = null;
    this.select = $("#watchlist-name", root);
    this.table = $("#watchlist-table tbody", root);
    this.info = $("#watchlist-info", root);
    this.select.addEventListener("change", () => this.show(this.select.value));
    stream.on((m) => this._onMessage(m));
    stream.onState((s) => {
      if (s.state === "open" && s.connects > 1 && this.name) this._snapshot(this.seq);
    });
  }

  async init(preferred) {
    try {
      const data = await api("/watchlists/names");
      this.select.replaceChildren(...data.names.map((n) => el("option", { value: n, text: n })));
      const first = data.names.includes(preferred) ? preferred : data.names.includes("NIFTY50") ? "NIFTY50" : data.names[0];
      if (first) await this.show(first);
    } catch (err) {
      this.info.textContent = `watchlists unavailable: ${err.message}`;
      this.initFailed = true;
    }
  }

  retryIfFailed() {
    if (this.initFailed) {
      this.initFailed = false;
      this.init(localStorage.getItem("mb.watchlist"));
    } else if (this.name && this.loadFailed) {
      this.show(this.name, true);
    }
  }

  activate() {
    this._movers();
    this.moversTimer = setInterval(() => this._movers(), MOVERS_EVERY_MS);
  }

  deactivate() {
    clearInterval(this.moversTimer);
  }

  async show(name, force = false) {
    if (!name || (name === this.name && !force)) return;
    const seq = ++this.seq;
    this.select.value = name;
    localStorage.setItem("mb.watchlist", name);
    this.info.textContent = `loading ${name}…`;
    let wl;
    try {
      wl = await api(`/watchlists/${enc(name)}`);
      this.loadFailed = false;
    } catch (err) {
      if (seq === this.seq) {
        this.info.textContent = `${name}: ${err.message}`;
        this.loadFailed = true;
        this.name = name;
      }
      return;
    }
    if (seq !== this.seq) return;
    if (this.symbols.length) this.stream.release(this.symbols);
    this.name = name;
    this.symbols = wl.symbols;
    this.rows.clear();
    this.table.replaceChildren(...wl.symbols.map((s) => this._row(s)));
    this.table.closest("table").dataset.watchlist = name;
    const movers = new Map((wl.movers || []).map((m) => [m.symbol, m]));
    for (const [symbol, m] of movers) this._update(symbol, { price: m.last_price, pct: m.change_percent, volume: m.volume }, false);
    this.info.textContent = wl.symbols.length
      ? `${wl.description || wl.name} · ${wl.symbols.length} symbols`
      : `${wl.name}: empty${wl.reason ? ` (${wl.reason})` : ""}`;
    this.stream.acquire(this.symbols);
    this._snapshot(seq);
  }

  async _snapshot(seq) {
    for (let i = 0; i < this.symbols.length; i += SNAPSHOT_CHUNK) {
      const chunk = this.symbols.slice(i, i + SNAPSHOT_CHUNK);
      let data;
      try {
        data = await api(`/dashboard/snapshot?symbols=${chunk.map(enc).join(",")}`);
      } catch {
        return;
      }
      if (seq !== this.seq) return;
      for (const [symbol, v] of Object.entries(data.symbols)) {
        const row = this.rows.get(symbol);
        if (row && row.live) continue; // a live message is newer than stored bars
        this._update(symbol, { price: v.last_price, pct: v.change_percent, volume: v.volume, at: v.as_of }, false);
      }
    }
  }

  _row(symbol) {
    const cells = {
      symbol: el("td", { class: "sym" }, el("a", { href: `#/chart?symbol=${enc(symbol)}`, text: symbol })),
      ltp: el("td", { class: "num", "data-field": "ltp", text: "–" }),
      pct: el("td", { class: "num", "data-field": "change", text: "–" }),
      volume: el("td", { class: "num", "data-field": "volume", text: "–" }),
      at: el("td", { class: "num muted", "data-field": "time", text: "" }),
    };
    const tr = el("tr", { "data-symbol": symbol }, Object.values(cells));
    this.rows.set(symbol, { tr, cells, live: false });
    return tr;
  }

  _update(symbol, { price, pct, volume, at }, live) {
    const row = this.rows.get(symbol);
    if (!row) return;
    if (live) row.live = true;
    const { cells } = row;
    if (price !== null && price !== undefined) {
      const text = fmtPrice(price);
      if (cells.ltp.textContent !== text) {
        cells.ltp.textContent = text;
        if (live) flash(cells.ltp);
      }
    }
    if (pct !== null && pct !== undefined) {
      cells.pct.textContent = fmtPct(pct);
      cells.pct.className = `num ${signClass(pct)}`;
    }
    if (volume !== null && volume !== undefined) cells.volume.textContent = fmtCompact(volume);
    if (at) cells.at.textContent = fmtClock(at);
  }

  _onMessage(m) {
    if (m.type === "unknown") {
      for (const s of m.symbols || []) {
        const row = this.rows.get(s);
        if (row) {
          row.tr.classList.add("unknown");
          row.cells.at.textContent = "not streamed";
        }
      }
      return;
    }
    if (!this.rows.has(m.symbol) || !m.data) return;
    const d = m.data;
    if (m.type === "tick") {
      if (m.snapshot && this.rows.get(m.symbol).live) return;
      this._update(m.symbol, { price: d.price, pct: d.change_percent, volume: d.volume, at: d.timestamp }, !m.snapshot);
    } else if (m.type === "stats") {
      this._update(m.symbol, { price: d.last_price, pct: d.change_percent, volume: d.volume, at: d.timestamp }, true);
    } else if (m.type === "status") {
      this.rows.get(m.symbol).tr.classList.toggle("stale", d.state === "feed_lost");
    }
  }

  async _movers() {
    const box = $("#movers", this.root);
    await Promise.all(MOVERS.map(async (name) => {
      const list = box.querySelector(`[data-movers="${name}"] ol`);
      try {
        const wl = await api(`/watchlists/${name}?limit=8`);
        const items = (wl.movers || []).map((m) => el("li", {},
          el("a", { href: `#/chart?symbol=${enc(m.symbol)}`, text: m.symbol }),
          el("span", { class: "num" }, fmtPrice(m.last_price)),
          el("span", { class: `num ${signClass(m.change_percent)}` }, name === "MOST_ACTIVE" ? fmtCompact(m.volume) : fmtPct(m.change_percent))));
        list.replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: wl.reason || "no data yet" })]));
      } catch (err) {
        list.replaceChildren(el("li", { class: "muted", text: err.message }));
      }
    }));
  }
}
