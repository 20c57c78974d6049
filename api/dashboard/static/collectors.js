// Collectors page: state and metrics of every collector (GET /collectors/metrics every
// 1.5 s while shown; GET /collectors every 10 s for mode, subscriptions and last error),
// and start / stop / subscribe (POST /collectors/:name/...) with the API token when set.

import { api, token } from "./api.js";
import { $, el, enc, fmtClock, fmtInt } from "./util.js";

const METRICS_EVERY_MS = 1500;
const DETAILS_EVERY_MS = 10000;
const STATE_CLASS = {
  running: "ok", starting: "warn", feed_lost: "warn", stale: "warn", unknown: "muted", stopped: "muted",
  shutdown: "muted", auth_failed: "bad", failed: "bad", no_credentials: "bad",
};

export class CollectorsPage {
  constructor(root, { config }) {
    this.root = root;
    this.config = config;
    this.body = $("#collectors-table tbody", root);
    this.note = $("#collectors-note", root);
    this.result = $("#collectors-result", root);
    this.details = {};
    this.rows = new Map();
    this.timers = [];
    this.detailsAt = 0;
    window.addEventListener("mb-token", () => this._hint());
  }

  activate() {
    this._poll();
    this.timers.push(setInterval(() => this._poll(), METRICS_EVERY_MS));
    this._hint();
  }

  deactivate() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  _hint() {
    const needs = this.config.auth_required && !token.get();
    this.note.textContent = needs
      ? "This API needs a token for start/stop/subscribe: set it with the “API token” button at the top."
      : "";
    this.note.hidden = !needs;
  }

  async _poll() {
    if (Date.now() - this.detailsAt > DETAILS_EVERY_MS) {
      this.detailsAt = Date.now();
      try {
        const data = await api("/collectors");
        this.details = Object.fromEntries(data.collectors.map((c) => [c.name, c]));
      } catch {
        this.detailsAt = 0; // retry next tick
      }
    }
    let metrics;
    try {
      metrics = await api("/collectors/metrics");
    } catch (err) {
      this.body.closest("table").dataset.state = "error";
      this._status(`metrics unavailable: ${err.message}`, true);
      return;
    }
    this.body.closest("table").dataset.state = "ready";
    const names = Object.keys(metrics).sort();
    if (!names.length) {
      this.rows.clear();
      this.body.replaceChildren(el("tr", {}, el("td", { colspan: 12, class: "muted",
        text: "No collectors yet: define them in configs/collectors.yaml or POST /collectors." })));
      return;
    }
    for (const name of [...this.rows.keys()]) {
      if (!(name in metrics)) {
        this.rows.get(name).tr.remove();
        this.rows.delete(name);
      }
    }
    if (this.rows.size === 0) this.body.replaceChildren();
    for (const name of names) this._render(name, metrics[name]);
  }

  _render(name, m) {
    let row = this.rows.get(name);
    if (!row) {
      row = this._row(name);
      this.rows.set(name, row);
      this.body.append(row.tr);
    }
    const detail = this.details[name];
    const f = row.fields;
    f.state.textContent = m.state;
    f.state.className = `badge ${STATE_CLASS[m.state] || "muted"}`;
    f.desired_state.textContent = m.desired_state;
    f.running.textContent = m.running ? "yes" : "no";
    f.subscribed_tokens.textContent = fmtInt(m.subscribed_tokens);
    f.ticks_received.textContent = fmtInt(m.ticks_received);
    f.bars_created.textContent = fmtInt(m.bars_created);
    f.errors.textContent = fmtInt(m.errors);
    f.errors.classList.toggle("down", m.errors > 0);
    f.reconnects.textContent = fmtInt(m.reconnects);
    f.lag_ms.textContent = m.lag_ms === null || m.lag_ms === undefined ? "–" : `${fmtInt(m.lag_ms)} ms`;
    f.last_tick_at.textContent = fmtClock(m.last_tick_at);
    const subs = detail ? [...detail.watchlists, ...detail.symbols] : [];
    f.name.title = detail
      ? `mode ${detail.mode} · ${subs.length ? subs.join(", ") : "no subscriptions"}${detail.status && detail.status.last_error ? ` · last error: ${detail.status.last_error}` : ""}`
      : "";
    f.subs.textContent = detail ? `${detail.mode} · ${subs.length ? subs.slice(0, 6).join(", ") + (subs.length > 6 ? ` +${subs.length - 6}` : "") : "—"}` : "";
    row.tr.dataset.state = m.state;
    row.tr.dataset.desired = m.desired_state;
    row.start.disabled = m.desired_state === "running";
    row.stop.disabled = m.desired_state === "stopped";
  }

  _row(name) {
    const fields = {};
    const cell = (key, cls = "num") => (fields[key] = el("td", { class: cls, "data-field": key }));
    fields.state = el("span", { class: "badge" });
    fields.subs = el("div", { class: "muted small" });
    const start = el("button", { type: "button", "data-action": "start", text: "Start", onclick: () => this._act(name, "start") });
    const stop = el("button", { type: "button", "data-action": "stop", text: "Stop", onclick: () => this._act(name, "stop") });
    const input = el("input", { type: "text", placeholder: "symbols or a watchlist", "data-field": "subscribe-input" });
    const subscribe = el("button", { type: "button", "data-action": "subscribe", text: "Subscribe", onclick: () => this._subscribe(name, input) });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this._subscribe(name, input);
    });
    const tr = el("tr", { "data-collector": name },
      el("td", { class: "sym" }, name, fields.subs),
      el("td", {}, fields.state),
      cell("desired_state", ""), cell("running", ""), cell("subscribed_tokens"), cell("ticks_received"),
      cell("bars_created"), cell("errors"), cell("reconnects"), cell("lag_ms"), cell("last_tick_at"),
      el("td", { class: "actions" }, start, stop, input, subscribe));
    fields.name = tr.firstChild;
    return { tr, fields, start, stop };
  }

  async _act(name, action, body) {
    this._status(`${action} ${name}…`);
    try {
      const res = await api(`/collectors/${enc(name)}/${action}`, { method: "POST", body });
      const added = res.added ? [...(res.added.watchlists || []), ...(res.added.symbols || [])] : [];
      const extra = added.length ? ` (added ${added.join(", ")})` : "";
      this._status(`${name}: ${action} ${res.changed === false ? "changed nothing" : "done"}${extra}; desired state ${res.desired_state}`);
      this.detailsAt = 0;
      this._poll();
      return true;
    } catch (err) {
      const hint = err.status === 401 ? " — set the API token with the “API token” button at the top" : "";
      this._status(`${name}: ${action} failed: ${err.message}${hint}`, true);
      return false;
    }
  }

  async _subscribe(name, input) {
    const items = input.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
    if (!items.length) return;
    // Upper-case names that are watchlists go as watchlists, the rest as symbols.
    let lists = [];
    try {
      lists = (await api("/watchlists/names")).names;
    } catch {
      lists = [];
    }
    const watchlists = items.filter((s) => lists.includes(s.toUpperCase())).map((s) => s.toUpperCase());
    const symbols = items.filter((s) => !lists.includes(s.toUpperCase()));
    const body = {};
    if (symbols.length) body.symbols = symbols;
    if (watchlists.length) body.watchlists = watchlists;
    if (await this._act(name, "subscribe", body)) input.value = "";
  }

  _status(text, isError = false) {
    this.result.textContent = text;
    this.result.classList.toggle("error", isError);
  }
}
