-- SCS cloud store, part 5: named API tokens with scopes.
-- Written for SQLite as Cloudflare D1 runs it: no PRAGMAs, no ATTACH, no extensions.
-- Only the SHA-256 (lower-case hex) of a token is stored; the token itself is shown once when created.
-- Scopes are cumulative: 'read', 'read,operate' or 'read,operate,admin'. A revoked token keeps its row
-- (revoked_ms set) so its name stays reserved and the audit trail that names it stays meaningful.
CREATE TABLE api_tokens (
    name       TEXT NOT NULL UNIQUE,
    sha256     TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL CHECK (scopes IN ('read', 'read,operate', 'read,operate,admin')),
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
