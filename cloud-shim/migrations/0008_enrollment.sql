-- SCS cloud store, part 8: first-boot enrollment of gateways with site enrollment tokens.
-- Written for SQLite as Cloudflare D1 runs it: no PRAGMAs, no ATTACH, no extensions.
-- Only the SHA-256 (lower-case hex) of a token is stored; the token is shown once when created.
-- A token enrolls at most max_uses gateways of its site until expires_ms (the cloud's clock, never the
-- gateway's). Revoked and used-up tokens keep their row so the enrollments that name them stay meaningful.
CREATE TABLE enrollment_tokens (
    id         TEXT PRIMARY KEY,               -- public handle for list/revoke, e.g. et-1a2b3c4d5e6f
    sha256     TEXT NOT NULL UNIQUE,
    site       TEXT NOT NULL,
    max_uses   INTEGER NOT NULL CHECK (max_uses >= 1),
    uses       INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- Which token enrolled which gateway, with the public key the gateway generated for itself.
CREATE TABLE enrollments (
    gateway_id  TEXT NOT NULL,
    token_id    TEXT NOT NULL REFERENCES enrollment_tokens (id),
    site        TEXT NOT NULL,
    public_key  BLOB NOT NULL,                 -- raw Ed25519 public key, 32 bytes
    enrolled_ms INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, enrolled_ms)
);
CREATE INDEX enrollments_by_token ON enrollments (token_id);
