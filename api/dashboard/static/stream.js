// One WebSocket to /stream/ws shared by every page (docs/websocket.md).
//
// Pages acquire/release symbols (reference counted); the client subscribes the union and
// re-subscribes after every reconnect. A subscribe naming an unknown symbol fails as a
// whole on the server, so a failed batch is retried symbol by symbol and the unknown ones
// are reported ("unknown" events). Reconnects back off exponentially with jitter
// (0.5 s doubling to 15 s); a ping every 20 s unanswered for 10 s counts as a dead socket.

const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const PONG_TIMEOUT_MS = 10000;
const BATCH = 100;

export class Stream {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.refs = new Map(); // symbol -> reference count
    this.unknown = new Set();
    this.handlers = new Set();
    this.stateHandlers = new Set();
    this.pending = new Map(); // request id -> symbols of a subscribe in flight
    this.nextId = 1;
    this.attempt = 0;
    this.state = "connecting"; // connecting | open | closed
    this.retryAt = 0;
    this.serverFeed = "ok"; // the server's own LISTEN feed: ok | lost
    this.connects = 0;
    this.pingTimer = null;
    this.pongTimer = null;
  }

  start() {
    this._connect();
    return this;
  }

  on(fn) {
    this.handlers.add(fn);
    return () => this.handlers.delete(fn);
  }

  onState(fn) {
    this.stateHandlers.add(fn);
    return () => this.stateHandlers.delete(fn);
  }

  acquire(symbols) {
    const fresh = [];
    for (const s of symbols) {
      const n = this.refs.get(s) || 0;
      this.refs.set(s, n + 1);
      if (n === 0) fresh.push(s);
    }
    if (fresh.length && this.state === "open") this._subscribe(fresh);
  }

  release(symbols) {
    const gone = [];
    for (const s of symbols) {
      const n = this.refs.get(s) || 0;
      if (n <= 1) {
        this.refs.delete(s);
        if (n === 1) gone.push(s);
      } else {
        this.refs.set(s, n - 1);
      }
    }
    const known = gone.filter((s) => !this.unknown.has(s));
    if (known.length && this.state === "open") {
      for (let i = 0; i < known.length; i += BATCH) {
        this._send({ type: "unsubscribe", symbols: known.slice(i, i + BATCH) });
      }
    }
  }

  // ---- internals --------------------------------------------------------------------

  _setState(state) {
    this.state = state;
    for (const fn of this.stateHandlers) fn(this);
  }

  _connect() {
    this._setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.connects += 1;
      this.pending.clear();
      this.unknown.clear();
      this._setState("open");
      const symbols = [...this.refs.keys()];
      if (symbols.length) this._subscribe(symbols);
      this._startPing();
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._dispatch(message);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this._stopPing();
      this.ws = null;
      this._scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows
  }

  _scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this._setState("closed");
    setTimeout(() => this._connect(), delay);
  }

  _startPing() {
    this._stopPing();
    this.pingTimer = setInterval(() => {
      this._send({ type: "ping", id: "keepalive" });
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (this.ws) this.ws.close(); // dead socket: reconnect
      }, PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _subscribe(symbols) {
    for (let i = 0; i < symbols.length; i += BATCH) {
      const chunk = symbols.slice(i, i + BATCH);
      const id = `sub-${this.nextId++}`;
      this.pending.set(id, chunk);
      this._send({ type: "subscribe", symbols: chunk, id });
    }
  }

  _emit(message) {
    for (const fn of this.handlers) {
      try {
        fn(message);
      } catch (err) {
        console.error("stream handler failed", err);
      }
    }
  }

  _dispatch(message) {
    const { type, id } = message;
    if (type === "pong") {
      clearTimeout(this.pongTimer);
      return;
    }
    if (type === "subscribed") {
      this.pending.delete(id);
      return;
    }
    if (type === "error" && this.pending.has(id)) {
      const chunk = this.pending.get(id);
      this.pending.delete(id);
      const wanted = chunk.filter((s) => this.refs.has(s));
      if (message.error === "unknown symbol" && wanted.length > 1) {
        this._subscribe1by1(wanted);
      } else if (message.error === "unknown symbol" || message.error === "invalid symbol") {
        for (const s of wanted) this.unknown.add(s);
        this._emit({ type: "unknown", symbols: wanted, detail: message.detail });
      } else {
        this._emit({ type: "stream_error", error: message.error, detail: message.detail });
      }
      return;
    }
    if (type === "status" && message.symbol === null && message.data) {
      // The server's own LISTEN feed (not one collector's feed).
      this.serverFeed = message.data.state === "stream_lost" ? "lost" : "ok";
      this._setState(this.state);
    }
    this._emit(message);
  }

  _subscribe1by1(symbols) {
    for (const s of symbols) {
      const id = `sub-${this.nextId++}`;
      this.pending.set(id, [s]);
      this._send({ type: "subscribe", symbols: [s], id });
    }
  }
}

export function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/stream/ws`;
}
