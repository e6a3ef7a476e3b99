-- Device events (camera/NVR transitions: replaced, firmware changed, rebooted, auth broken/restored,
-- down/up, stream lost/restored, HDD failed/restored) as the agent sends them inside telemetry batches.
-- Stored once per (gateway, boot, seq, position in the batch): a replayed batch is a duplicate at the
-- ingest_receipts level already, and the key keeps a partial replay from storing twice either.
CREATE TABLE device_events (
    gateway_id  TEXT NOT NULL,
    boot        TEXT NOT NULL,                        -- 16 hex digits, as in ingest_receipts
    seq         INTEGER NOT NULL,
    idx         INTEGER NOT NULL,                     -- position in the batch's event list
    sensor_id   TEXT NOT NULL,
    ts          INTEGER NOT NULL,                     -- when the agent noticed (ms since the Unix epoch)
    kind        TEXT NOT NULL,                        -- device.replaced | stream.lost | ... (docs/protocol.md)
    detail      TEXT,
    attrs       TEXT,                                 -- JSON object (old/new, profile, hdd, ...)
    received_at INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, boot, seq, idx)
) WITHOUT ROWID;
CREATE INDEX device_events_sensor_ts ON device_events (sensor_id, ts);
CREATE INDEX device_events_gateway_ts ON device_events (gateway_id, ts);
