// Entry point: configuration, the chart library, the shared stream, the pages, the hash
// router (#/chart?symbol=TCS&tf=5m, #/watchlist, #/collectors, #/quality) and the status
// banner (API down, database down, stream reconnecting, server feed lost).

import { api, health, onHealth, token, watchHealth } from "./api.js";
import { ChartPage } from "./chart.js";
import { CollectorsPage } from "./collectors.js";
import { QualityPage } from "./quality.js";
import { Stream, streamUrl } from "./stream.js";
import { $, el } from "./util.js";
import { WatchlistPage } from "./watchlist.js";

const LIBRARY_URL = "/dashboard/vendor/lightweight-charts.mjs";
const INSTALL_HINT = "the chart library (lightweight-charts) is not installed: run `make run` or " +
  "`market-bridge setup` (or `bash market_bridge/setup/install_web.sh`), then reload this page";
const FALLBACK_CONFIG = {
  now: new Date().toISOString(),
  trading_day: null,
  timeframes: ["1m", "3m", "5m", "10m", "15m", "30m", "1h", "day"],
  auth_required: false,
  prefect_ui_url: `${location.protocol}//${location.hostname}:4200`,
  default_symbol: null,
  chart_library: { available: true, url: LIBRARY_URL },
};

async function loadConfig() {
  try {
    return await api("/dashboard/config", { timeout: 5000 });
  } catch {
    return FALLBACK_CONFIG;
  }
}

async function loadLibrary(config) {
  const lib = config.chart_library || {};
  if (lib.available === false) return { LWC: null, libraryError: lib.install_hint || INSTALL_HINT };
  try {
    return { LWC: await import(lib.url || LIBRARY_URL), libraryError: null };
  } catch (err) {
    return { LWC: null, libraryError: `${INSTALL_HINT} (${err.message})` };
  }
}

// ---- banner and status pills ------------------------------------------------------------

function renderStatus(stream, libraryError) {
  const messages = [];
  const apiPill = $("#pill-api");
  apiPill.dataset.state = health.state === "up" ? "ok" : health.state === "db_down" ? "warn" : "bad";
  apiPill.title = health.reason || "REST API and database reachable";
  if (health.state === "down") messages.push(`API unreachable — ${health.reason}. Retrying every 5 s; the page recovers by itself.`);
  else if (health.state === "db_down") messages.push(`The API is up but its ${health.reason}. Stored data cannot be read; retrying.`);

  const sPill = $("#pill-stream");
  if (stream.state === "open" && stream.serverFeed === "ok") sPill.dataset.state = "ok";
  else if (stream.state === "open") sPill.dataset.state = "warn";
  else sPill.dataset.state = "bad";
  if (stream.state !== "open") {
    const secs = Math.max(0, Math.round((stream.retryAt - Date.now()) / 1000));
    messages.push(stream.state === "connecting"
      ? "Live stream: connecting…"
      : `Live stream disconnected — reconnecting in ${secs} s (live updates paused).`);
  } else if (stream.serverFeed === "lost") {
    messages.push("The server lost its live feed from the database; live updates are paused until it is back.");
  }

  const fPill = $("#pill-feed");
  const feed = health.streaming;
  fPill.dataset.state = feed === "ok" ? "ok" : feed === "unknown" ? "unknown" : "warn";
  fPill.title = { ok: "streaming processes are heartbeating", stale: "streaming processes stopped heartbeating",
    absent: "no streaming process is running (market-bridge stream)", unknown: "streaming state unknown" }[feed] || feed;

  if (libraryError) messages.push(libraryError);
  const banner = $("#banner");
  banner.replaceChildren(...messages.map((m) => el("div", { text: m })));
  banner.hidden = messages.length === 0;
  banner.dataset.kind = health.state !== "up" || stream.state !== "open" ? "bad" : "warn";
}

// ---- token ---------------------------------------------------------------------------

function setupToken(config) {
  const button = $("#token-button");
  const form = $("#token-form");
  const input = $("#token-input");
  const show = () => {
    button.textContent = token.get() ? "API token ✓" : config.auth_required ? "API token (needed)" : "API token";
    button.classList.toggle("needed", config.auth_required && !token.get());
  };
  button.addEventListener("click", () => {
    form.hidden = !form.hidden;
    input.value = token.get();
    if (!form.hidden) input.focus();
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    token.set(input.value.trim());
    form.hidden = true;
    show();
  });
  $("#token-clear").addEventListener("click", () => {
    token.set("");
    input.value = "";
    show();
  });
  show();
}

// ---- router --------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, query = ""] = raw.split("?");
  return { name: name || "chart", params: new URLSearchParams(query) };
}

async function main() {
  const config = await loadConfig();
  const { LWC, libraryError } = await loadLibrary(config);
  const stream = new Stream(streamUrl());
  const ctx = { config, stream, LWC, libraryError, navigate: (hash) => (location.hash = hash) };
  const pages = {
    chart: new ChartPage($("#page-chart"), ctx),
    watchlist: new WatchlistPage($("#page-watchlist"), ctx),
    collectors: new CollectorsPage($("#page-collectors"), ctx),
    quality: new QualityPage($("#page-quality"), ctx),
  };
  let current = null;

  const route = () => {
    const { name, params } = parseHash();
    const key = name in pages ? name : "chart";
    if (current !== key) {
      if (current && pages[current].deactivate) pages[current].deactivate();
      for (const [k] of Object.entries(pages)) $(`#page-${k}`).hidden = k !== key;
      for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === key);
      current = key;
      if (pages[key].activate) pages[key].activate();
    }
    if (key === "chart") {
      const saved = JSON.parse(localStorage.getItem("mb.chart") || "null") || {};
      const symbol = params.get("symbol") || pages.chart.symbol || saved.symbol || config.default_symbol || "NIFTY 50";
      const tf = params.get("tf") || params.get("timeframe") || pages.chart.timeframe || saved.timeframe || "1m";
      pages.chart.show(symbol, tf);
    }
    document.body.dataset.page = key;
  };

  setupToken(config);
  const status = () => renderStatus(stream, libraryError);
  stream.onState(status);
  onHealth((h, was) => {
    status();
    if (h.state === "up" && was !== "up") {
      for (const page of Object.values(pages)) if (page.retryIfFailed) page.retryIfFailed();
    }
  });
  setInterval(() => {
    if (stream.state !== "open") status(); // the reconnect countdown
  }, 1000);
  const checkHealth = watchHealth(5000);
  stream.start();
  status();

  window.addEventListener("hashchange", route);
  route();
  await Promise.all([
    pages.watchlist.init(localStorage.getItem("mb.watchlist")),
    pages.quality.init(config.default_symbol),
  ]);
  // Symbols of the current watchlist as suggestions for the chart's symbol box.
  $("#symbol-options").replaceChildren(...pages.watchlist.symbols.map((s) => el("option", { value: s })));
  document.body.dataset.ready = "true";
  window.mbDashboard = { pages, stream, config, checkHealth }; // for the console and tests
}

main();
