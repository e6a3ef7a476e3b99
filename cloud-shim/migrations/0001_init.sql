-- SCS cloud store, part 1: sensors, metrics, ingest bookkeeping.
-- Written for SQLite as Cloudflare D1 runs it: plain DDL only (see store/migrations.rs for what D1 refuses).
-- Times are milliseconds since the Unix epoch. Boot ids are u64 on the wire and stored as 16 hex digits
-- (TEXT) because SQLite integers and JavaScript numbers cannot hold every u64.

-- Every device the platform knows: gateways (EDGE_CONTROLLER) and their children, from inventory messages.
CREATE TABLE sensors (
    id               TEXT PRIMARY KEY,
    type             TEXT NOT NULL,
    parent_sensor_id TEXT,
    name             TEXT,
    attrs            TEXT,                            -- JSON object of free-form attributes
    gateway_id       TEXT NOT NULL,                   -- the gateway that announced it
    status           TEXT NOT NULL DEFAULT 'unknown', -- online | offline | unknown
    last_seen        INTEGER,
    announced_seq    INTEGER,                         -- seq of the inventory that last described it
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX sensors_gateway ON sensors (gateway_id);
CREATE INDEX sensors_parent ON sensors (parent_sensor_id);

-- One row per metric sample. Idempotency comes from ingest_receipts, so samples need no unique key.
-- NUMERIC keeps integer samples (byte counters) exact and stores the rest as REAL.
CREATE TABLE metrics (
    sensor_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    ts         INTEGER NOT NULL,
    value      NUMERIC NOT NULL,
    gateway_id TEXT NOT NULL
);
CREATE INDEX metrics_sensor_name_ts ON metrics (sensor_id, name, ts);
-- "Latest samples of a sensor" without a metric name must not sort every sample the sensor ever had.
CREATE INDEX metrics_sensor_ts ON metrics (sensor_id, ts);

-- Every receipted uplink message ever stored: the primary key is the deduplication rule.
CREATE TABLE ingest_receipts (
    gateway_id  TEXT NOT NULL,
    boot        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,                        -- telemetry | inventory | command
    received_at INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, boot, seq)
) WITHOUT ROWID;

-- Messages an agent dropped from its full queue, as it reported them.
CREATE TABLE gaps (
    gateway_id  TEXT NOT NULL,
    boot        TEXT NOT NULL,
    seq         INTEGER NOT NULL,                     -- the batch that reported the gap
    dropped     INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, boot, seq)
) WITHOUT ROWID;
CREATE INDEX gaps_received ON gaps (gateway_id, received_at);

-- Refused uplink messages, counted per gateway and reason (bounded: one row per pair, not per message).
-- gateway_id is '_unknown' when the topic named no valid gateway.
CREATE TABLE rejections (
    gateway_id TEXT NOT NULL,
    reason     TEXT NOT NULL,                         -- too_large | malformed | version | topic | ...
    count      INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    last_topic TEXT NOT NULL,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, reason)
) WITHOUT ROWID;
