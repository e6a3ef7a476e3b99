-- SCS cloud store, part 2: command sessions and their audit trail.
-- D1-compatible DDL only. Times are milliseconds since the Unix epoch; JSON columns hold JSON text.

-- One row per command, from POST /v1/gateways/{id}/commands to its terminal state.
-- state: queued | delivered | accepted | running | succeeded | failed | timed_out | cancelled | expired
--        | rejected | interrupted (scs_protocol::CommandState); it only moves forward (CommandState::rank).
CREATE TABLE commands (
    id                  TEXT PRIMARY KEY,
    gateway_id          TEXT NOT NULL,
    type                TEXT NOT NULL,
    params              TEXT NOT NULL,              -- JSON object, validated, defaults applied
    confirm             INTEGER NOT NULL DEFAULT 0,
    state               TEXT NOT NULL,
    result              TEXT,                       -- JSON value reported by the agent
    error               TEXT,
    artifacts           TEXT,                       -- JSON array of artifact metadata reported by the agent
    requested_by        TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,           -- not delivered by then: expired
    timeout_secs        INTEGER NOT NULL,
    delivered_at        INTEGER,                    -- last publish to the gateway
    deliveries          INTEGER NOT NULL DEFAULT 0, -- publishes, re-sends on reconnect included
    cancel_requested_at INTEGER                     -- a cancel is pending on the gateway
);
-- History per gateway, newest first; and the session's "what is still open for this gateway".
CREATE INDEX commands_gateway_created ON commands (gateway_id, created_at);
CREATE INDEX commands_state_expires ON commands (state, expires_at);

-- Every state transition of every command (and every cancel request): who, when, from, to, why.
CREATE TABLE command_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id  TEXT NOT NULL,
    gateway_id  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,                      -- user (X-SCS-User / token), "agent:{gateway}" or "shim"
    from_state  TEXT,                               -- NULL when the command is created
    to_state    TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX command_audit_command ON command_audit (command_id, id);
