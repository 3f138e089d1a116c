-- Readiness (PostgreSQL): one row each gateway instance rewrites when asked whether the store
-- takes writes (`/readyz`). A standby (read-only after a failover left this gateway on it),
-- a full disk or a lost primary fails here first, before a record view's audit record would.

CREATE TABLE store_probe (
    instance    TEXT PRIMARY KEY NOT NULL,
    probed_at   TEXT NOT NULL,
    -- SQLite: random bytes (rewritten each time) as large as a busy moment's batch of audit records, so a
    -- probe that fits means an audit write fits (a full disk can still take a tiny row in
    -- space a failed write left allocated). PostgreSQL: NULL.
    pad         BYTEA
);
