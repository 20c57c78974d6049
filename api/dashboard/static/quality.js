// Data quality page: completeness heatmap (symbol x trading day) from GET /dashboard/quality,
// the gaps of a cell (or of a symbol over the range) from GET /intraday/gaps, a button that
// starts a gap-fill flow run through Prefect (POST /dashboard/gap-fill), and a link to the
// Prefect UI.

import { api } from "./api.js";
import { $, el, enc, fmtInt } from "./util.js";

export class QualityPage {
  constructor(root, { config }) {
    this.root = root;
    this.config = config;
    this.form = $("#quality-form", root);
    this.watchlist = $("#quality-watchlist", root);
    this.symbols = $("#quality-symbols", root);
    this.timeframe = $("#quality-timeframe", root);
    this.from = $("#quality-from", root);
    this.to = $("#quality-to", root);
    this.heatmap = $("#heatmap", root);
    this.info = $("#quality-info", root);
    this.gaps = $("#gaps", root);
    this.selection = null;
    this.loaded = false;
    for (const tf of config.timeframes) this.timeframe.append(el("option", { value: tf, text: tf }));
    const prefect = $("#prefect-link", root);
    prefect.href = config.prefect_ui_url;
    prefect.textContent = `Prefect UI (${config.prefect_ui_url.replace(/^https?:\/\//, "")})`;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.load();
    });
  }

  async init(defaultSymbol) {
    if (defaultSymbol && !this.symbols.value) this.symbols.value = defaultSymbol;
    try {
      const data = await api("/watchlists/names");
      this.watchlist.replaceChildren(el("option", { value: "", text: "— symbols below —" }),
        ...data.names.map((n) => el("option", { value: n, text: n })));
    } catch {
      // the list is optional: symbols can be typed
    }
    if (this.active && !this.loaded) this.activate();
  }

  activate() {
    this.active = true;
    if (!this.loaded && (this.symbols.value || this.watchlist.value)) this.load();
  }

  deactivate() {
    this.active = false;
  }

  retryIfFailed() {
    if (this.active && this.heatmap.dataset.state === "error") this.load();
  }

  async load() {
    const params = new URLSearchParams({ timeframe: this.timeframe.value || "1m" });
    const symbols = this.symbols.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (symbols.length) params.set("symbols", symbols.join(","));
    if (this.watchlist.value) params.set("watchlist", this.watchlist.value);
    if (this.from.value) params.set("from", this.from.value);
    if (this.to.value) params.set("to", this.to.value);
    if (!params.has("symbols") && !params.has("watchlist")) {
      this.info.textContent = "choose a watchlist or type symbols";
      return;
    }
    this.info.textContent = "loading…";
    this.heatmap.dataset.state = "loading";
    let data;
    try {
      data = await api(`/dashboard/quality?${params}`);
    } catch (err) {
      this.heatmap.dataset.state = "error";
      this.info.textContent = err.message;
      return;
    }
    this.loaded = true;
    this.from.value = data.from;
    this.to.value = data.to;
    this.data = data;
    this._render(data);
    this.heatmap.dataset.state = "ready";
    const worst = data.symbols.filter((r) => r.total.missing > 0).length;
    this.info.textContent = `${data.symbols.length} symbols · ${data.days.length} trading days · ${data.timeframe} · ` +
      `${worst ? `${worst} with missing bars` : "nothing missing"}` +
      (data.beyond_known_holidays ? " · beyond the holidays the calendar knows" : "");
  }

  _render(data) {
    const head = el("tr", {}, el("th", { text: "symbol" }),
      ...data.days.map((d) => el("th", { class: "day", text: d.slice(5) , title: d })), el("th", { text: "range" }));
    const rows = data.symbols.map((row) => el("tr", { "data-symbol": row.symbol },
      el("th", { class: "sym" }, el("button", { type: "button", class: "link", text: row.symbol,
        onclick: () => this._gaps(row.symbol, data.from, data.to) })),
      ...data.days.map((d) => this._cell(row.symbol, d, row.days[d])),
      this._cell(row.symbol, null, row.total)));
    this.heatmap.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  _cell(symbol, day, c) {
    const text = c.quality === "no_session" ? "·" : `${c.percent.toFixed(c.percent === 100 ? 0 : 1)}`;
    const td = el("td", {
      class: `cell q-${c.quality}${day ? "" : " total"}`,
      "data-day": day || "range",
      "data-missing": String(c.missing),
      title: `${symbol}${day ? ` ${day}` : ""}: ${fmtInt(c.actual)} of ${fmtInt(c.expected)} bars (${c.percent}%, ${c.quality})`,
      text,
    });
    if (c.missing > 0) {
      td.classList.add("clickable");
      td.addEventListener("click", () => this._gaps(symbol, day || this.data.from, day || this.data.to));
    }
    return td;
  }

  async _gaps(symbol, from, to) {
    const timeframe = this.data ? this.data.timeframe : this.timeframe.value;
    this.selection = { symbol, from, to, timeframe };
    this.gaps.replaceChildren(el("p", { class: "muted", text: `gaps of ${symbol} ${from}…${to}: loading` }));
    let data;
    try {
      data = await api(`/intraday/gaps/${enc(symbol)}?timeframe=${timeframe}&from=${from}&to=${to}`);
    } catch (err) {
      this.gaps.replaceChildren(el("p", { class: "error", text: `${symbol}: ${err.message}` }));
      return;
    }
    const title = el("h3", {}, `${symbol} · ${timeframe} · ${from === to ? from : `${from} → ${to}`}: `,
      el("span", { "data-field": "gap-count", text: `${data.gap_count} gap${data.gap_count === 1 ? "" : "s"}` }),
      ` · ${fmtInt(data.missing_bars)} missing of ${fmtInt(data.expected_bars)} bars`);
    const rows = data.gaps.map((g) => el("tr", { class: "gap" },
      el("td", { text: g.start.replace("T", " ").slice(0, 16) }),
      el("td", { text: g.end.replace("T", " ").slice(0, 16) }),
      el("td", { class: "num", text: fmtInt(g.missing_bars) })));
    const table = data.gaps.length
      ? el("table", { class: "grid", id: "gaps-table" },
          el("thead", {}, el("tr", {}, el("th", { text: "from" }), el("th", { text: "to (excl.)" }), el("th", { text: "bars" }))),
          el("tbody", {}, rows))
      : el("p", { class: "muted", text: "no gaps in this range" });
    const result = el("p", { id: "gap-fill-result" });
    const button = el("button", { type: "button", id: "gap-fill", text: "Fill these gaps (Prefect gap-fill)",
      disabled: !data.gaps.length, onclick: () => this._fill(button, result) });
    this.gaps.replaceChildren(title, table, el("div", { class: "row" }, button), result);
  }

  async _fill(button, result) {
    const { symbol, from, to, timeframe } = this.selection;
    button.disabled = true;
    result.className = "";
    result.textContent = "starting a gap-fill flow run…";
    try {
      const run = await api("/dashboard/gap-fill", {
        method: "POST", body: { symbols: [symbol], from_date: from, to_date: to, timeframe },
      });
      result.replaceChildren("Flow run ", el("a", { href: run.ui_url, target: "_blank", rel: "noopener", text: run.flow_run_name || run.flow_run_id }),
        ` created (${run.state || "scheduled"}); the serving process picks it up within its poll interval. Reload the heatmap when it has finished.`);
    } catch (err) {
      result.className = "error";
      const hint = err.status === 401 ? " — set the API token with the “API token” button at the top" : "";
      result.textContent = `gap fill not started: ${err.message}${hint}`;
    } finally {
      button.disabled = false;
    }
  }
}
