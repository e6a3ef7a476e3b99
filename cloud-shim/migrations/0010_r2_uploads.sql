-- SCS cloud store, part 10: R2 multipart state of uploads in progress (the Worker only).
-- The Worker keeps an artifact's bytes in R2 and maps each PATCH onto one R2 multipart part; these rows
-- are its record of the multipart upload and of the parts committed so far. The committed offset it
-- reports is the sum of the committed parts' sizes. The shim stores bytes on disk and never writes here.
-- The declared metadata stays in `uploads` (0003), the finished artifact in `command_artifacts`.

CREATE TABLE r2_uploads (
    artifact_id  TEXT PRIMARY KEY,                    -- = uploads.artifact_id
    upload_id    TEXT NOT NULL,                       -- R2 multipart upload id
    part_size    INTEGER NOT NULL,                    -- size of every part but the last, fixed at create
    created_at   INTEGER NOT NULL
);

CREATE TABLE r2_upload_parts (
    artifact_id  TEXT NOT NULL,
    part_number  INTEGER NOT NULL,                    -- 1-based; part n covers [(n-1)*part_size, ...)
    etag         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, part_number)
);
