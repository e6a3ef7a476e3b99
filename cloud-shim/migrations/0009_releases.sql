-- SCS cloud store, part 9: signed agent releases and the offers that sent them to gateways.
-- Written for SQLite as Cloudflare D1 runs it: no PRAGMAs, no ATTACH, no extensions.
-- A release is one binary from `scripts/build-release` for one Rust target triple, accepted only after its
-- Ed25519 signature verified with the release public key. The bytes live in the object store under the
-- key in object_key (releases prefix); these tables hold metadata. Times are ms since the Unix epoch.
CREATE TABLE releases (
    id          TEXT PRIMARY KEY,                 -- rel- + 20 hex digits, minted by the cloud
    version     TEXT NOT NULL,                    -- the signed version label
    target      TEXT NOT NULL,                    -- Rust target triple, e.g. armv7-unknown-linux-gnueabihf
    size        INTEGER NOT NULL,                 -- bytes, part of the signed message
    sha256      TEXT NOT NULL,                    -- lower-case hex, part of the signed message
    signature   TEXT NOT NULL,                    -- base64 Ed25519 signature by the release key
    file_name   TEXT NOT NULL,                    -- the update file's name from the manifest (display only)
    object_key  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (version, target)
);

-- Which release an agent.update command offered to which gateway (the command row holds the rest).
CREATE TABLE release_offers (
    command_id  TEXT PRIMARY KEY,
    release_id  TEXT NOT NULL REFERENCES releases (id),
    gateway_id  TEXT NOT NULL,
    offered_by  TEXT NOT NULL,                    -- the API token's actor, as in the command audit
    offered_ms  INTEGER NOT NULL
);
CREATE INDEX release_offers_gateway ON release_offers (gateway_id, offered_ms);
CREATE INDEX release_offers_release ON release_offers (release_id);
