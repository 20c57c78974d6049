-- Market data: bars, ticks, order book, instruments. Hypertables with 1-day chunks.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE SCHEMA IF NOT EXISTS md;

-- Kite instruments dump. Tokens can be reused after a derivative expires, so the natural
-- key is (exchange, tradingsymbol); the token is indexed for the ticker's lookups.
CREATE TABLE md.instruments (
    exchange TEXT NOT NULL,
    tradingsymbol TEXT NOT NULL,
    instrument_token BIGINT NOT NULL,
    exchange_token BIGINT,
    name TEXT,
    last_price DOUBLE PRECISION,
    expiry DATE,
    strike DOUBLE PRECISION,
    tick_size DOUBLE PRECISION,
    lot_size INTEGER,
    instrument_type TEXT,
    segment TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, tradingsymbol)
);
CREATE INDEX instruments_token_idx ON md.instruments (instrument_token);

-- OHLCV bars of every timeframe. The seed's columns and unique key, plus provenance:
-- 'live' bars come from our aggregator, 'historical' ones from Kite's historical API
-- (exchange-official); a historical bar replaces a live one for a closed period, never
-- the reverse. revision counts amendments of a final bar by late ticks.
CREATE TABLE md.intraday_bars (
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    instrument_token BIGINT NOT NULL,
    bar_timestamp TIMESTAMPTZ NOT NULL,
    timeframe TEXT NOT NULL,
    open DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL,
    volume BIGINT NOT NULL DEFAULT 0,
    trades_count INTEGER,
    vwap DOUBLE PRECISION,
    oi BIGINT,
    source TEXT NOT NULL DEFAULT 'zerodha',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    provenance TEXT NOT NULL DEFAULT 'historical'
        CHECK (provenance IN ('live', 'historical')),
    revision INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CHECK (timeframe IN ('1m', '3m', '5m', '10m', '15m', '30m', '1h', 'day')),
    UNIQUE (exchange, symbol, bar_timestamp, timeframe)
);
SELECT create_hypertable('md.intraday_bars', 'bar_timestamp',
                         chunk_time_interval => INTERVAL '1 day');
-- Serves range scans and "latest bar" for one symbol and timeframe.
CREATE INDEX intraday_bars_symbol_tf_ts_idx
    ON md.intraday_bars (symbol, timeframe, exchange, bar_timestamp DESC);

-- Ticks as Kite sends them (snapshots). price/quantity are the seed's columns (last
-- price, last traded quantity); the rest is what quote/full mode carries that users need.
CREATE TABLE md.tick_data (
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    instrument_token BIGINT NOT NULL,
    tick_timestamp TIMESTAMPTZ NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    quantity BIGINT NOT NULL,
    trade_type TEXT,
    source TEXT NOT NULL DEFAULT 'zerodha',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    volume_traded BIGINT,          -- Kite's cumulative day volume
    volume_delta BIGINT,           -- our per-tick volume from its deltas
    average_price DOUBLE PRECISION,
    total_buy_quantity BIGINT,
    total_sell_quantity BIGINT,
    bid_price DOUBLE PRECISION,
    bid_quantity BIGINT,
    ask_price DOUBLE PRECISION,
    ask_quantity BIGINT,
    oi BIGINT,
    last_trade_time TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    mode TEXT
);
SELECT create_hypertable('md.tick_data', 'tick_timestamp',
                         chunk_time_interval => INTERVAL '1 day');
CREATE INDEX tick_data_symbol_ts_idx ON md.tick_data (symbol, exchange, tick_timestamp DESC);

-- Level-2 depth snapshots (5 levels a side) from full-mode ticks, conflated by the writer.
CREATE TABLE md.order_book (
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    instrument_token BIGINT NOT NULL,
    snapshot_timestamp TIMESTAMPTZ NOT NULL,
    bid_prices DOUBLE PRECISION[] NOT NULL,
    bid_quantities BIGINT[] NOT NULL,
    bid_orders INTEGER[] NOT NULL,
    ask_prices DOUBLE PRECISION[] NOT NULL,
    ask_quantities BIGINT[] NOT NULL,
    ask_orders INTEGER[] NOT NULL,
    total_buy_quantity BIGINT,
    total_sell_quantity BIGINT,
    source TEXT NOT NULL DEFAULT 'zerodha',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (exchange, symbol, snapshot_timestamp)
);
SELECT create_hypertable('md.order_book', 'snapshot_timestamp',
                         chunk_time_interval => INTERVAL '1 day');
