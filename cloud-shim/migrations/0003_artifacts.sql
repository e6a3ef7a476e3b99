-- SCS cloud store, part 3: command artifacts (log bundles, snapshots, clips).
-- Written for SQLite as Cloudflare D1 runs it: no PRAGMAs, no ATTACH, no extensions.
-- Times are milliseconds since the Unix epoch. The bytes live in the object store (R2 in production,
-- {data_dir}/objects here); these tables hold only metadata. Object keys derive from the artifact id,
-- which the cloud mints, never from the uploader's file name.

-- Uploads in progress: created by POST /v1/uploads/{id}, removed when finalized or discarded.
-- The committed offset is not stored here: the object store's durable length is the only truth.
CREATE TABLE uploads (
    artifact_id  TEXT PRIMARY KEY,
    command_id   TEXT NOT NULL,
    name         TEXT NOT NULL,                       -- sanitized display name
    size         INTEGER NOT NULL,                    -- declared total size in bytes
    sha256       TEXT NOT NULL,                       -- declared lower-case hex SHA-256
    content_type TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX uploads_command ON uploads (command_id);

-- Finalized artifacts whose size and SHA-256 the cloud verified.
CREATE TABLE command_artifacts (
    id           TEXT PRIMARY KEY,                    -- artifact id, minted with the upload grant
    command_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,                    -- upload started
    completed_at INTEGER NOT NULL                     -- finalize verified the bytes
);
CREATE INDEX command_artifacts_command ON command_artifacts (command_id);
