-- SCS cloud store, part 7: a command may target one child device of its gateway (a camera or an NVR).
-- D1-compatible DDL only. NULL = the gateway itself.
ALTER TABLE commands ADD COLUMN target TEXT;              -- child sensor id (sensors.id whose parent is the gateway)
