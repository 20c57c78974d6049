// Small helpers shared by the pages: DOM, number and time formatting, IST chart time.

export const IST_OFFSET_S = 19800; // +05:30: chart times are IST wall-clock "as if UTC"

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function enc(symbol) {
  return encodeURIComponent(symbol);
}

// "nse:reliance " -> "RELIANCE"; other exchanges keep their prefix ("BSE:SENSEX").
export function normSymbol(raw) {
  const s = String(raw || "").trim().toUpperCase().replace(/\s+/g, " ");
  return s.startsWith("NSE:") ? s.slice(4) : s;
}

export function fmtPrice(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function fmtInt(v) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString("en-IN", { maximumFractionDigits: 0 });
}

export function fmtCompact(v) {
  if (v === null || v === undefined) return "–";
  const n = Number(v);
  if (Math.abs(n) >= 1e7) return (n / 1e7).toFixed(2) + " Cr";
  if (Math.abs(n) >= 1e5) return (n / 1e5).toFixed(2) + " L";
  return fmtInt(n);
}

export function fmtPct(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const n = Number(v);
  return (n > 0 ? "+" : "") + n.toFixed(2) + "%";
}

export function signClass(v) {
  if (v === null || v === undefined || Number(v) === 0) return "";
  return Number(v) > 0 ? "up" : "down";
}

// RFC 3339 (any offset) -> seconds of IST wall-clock time, for the chart's UTC axis.
export function chartTime(iso) {
  return Math.floor(Date.parse(iso) / 1000) + IST_OFFSET_S;
}

export function fmtChartTime(t, withDate = true) {
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  if (!withDate) return hm;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${hm}`;
}

// An RFC 3339 instant as IST "HH:MM:SS" (the server sends +05:30 already).
export function fmtClock(iso) {
  if (!iso) return "–";
  const m = /T(\d{2}:\d{2}:\d{2})/.exec(iso);
  return m ? m[1] : iso;
}

// Start (chart time) of the bar containing chart time t: intraday bars sit on a grid
// anchored at 09:15 IST, day bars at IST midnight (market_bridge.market.timeframes).
export function bucketStart(t, timeframe) {
  const day = Math.floor(t / 86400) * 86400;
  if (timeframe === "day") return day;
  const minutes = timeframe === "1h" ? 60 : parseInt(timeframe, 10);
  const anchor = day + 9 * 3600 + 15 * 60;
  const elapsed = Math.floor((t - anchor) / 60);
  return anchor + Math.floor(elapsed / minutes) * minutes * 60;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function flash(node) {
  node.classList.remove("flash");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash");
}
