-- Gateway identity: one row per provisioned gateway (`scs-cloud-shim gateways add`).
-- Only active gateways may connect to the embedded broker and have their uplinks accepted; every uplink
-- must carry a COSE_Sign1 signature by public_key. Revoked rows stay so their history keeps its owner.
CREATE TABLE gateways (
    id                   TEXT PRIMARY KEY,
    public_key           BLOB NOT NULL,                   -- raw Ed25519 public key, 32 bytes
    mqtt_password_sha256 TEXT NOT NULL,                   -- lowercase hex SHA-256 of the MQTT password
    status               TEXT NOT NULL DEFAULT 'active',  -- active | revoked
    created_ms           INTEGER NOT NULL,
    revoked_ms           INTEGER
);
