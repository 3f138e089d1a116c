-- Shared state (SQLite). Readiness: one row each gateway instance rewrites when asked whether the store
-- takes writes (`/readyz`). A write that cannot reach the disk (full, read-only) fails here
-- first, before a record view's audit record would.

CREATE TABLE store_probe (
    instance    TEXT PRIMARY KEY NOT NULL,
    probed_at   TEXT NOT NULL,
    -- SQLite: random bytes (rewritten each time) as large as a busy moment's batch of audit records, so a
    -- probe that fits means an audit write fits (a full disk can still take a tiny row in
    -- space a failed write left allocated). PostgreSQL: NULL.
    pad         BLOB
);

-- Web state every gateway of a region shares (SQLite, the single embedded instance): page
-- sessions and sign-ins in progress, keyed by a hash of the cookie's id (the id itself is never
-- stored), and rate-limit buckets. Times in Unix milliseconds.
CREATE TABLE web_session (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    data            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL
);
CREATE INDEX web_session_last_seen ON web_session (last_seen_ms);

CREATE TABLE web_login (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    data            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL
);
CREATE INDEX web_login_created ON web_login (created_ms);

CREATE TABLE rate_bucket (
    key             TEXT PRIMARY KEY NOT NULL,
    tokens          REAL NOT NULL,
    at_ms           INTEGER NOT NULL
);
CREATE INDEX rate_bucket_at ON rate_bucket (at_ms);

-- Leases: one holder at a time for work a region does once (the scheduled index sync). A
-- holder renews its lease while it works; one that dies stops renewing, and once the lease
-- has expired another gateway takes it over.
CREATE TABLE lease (
    name            TEXT PRIMARY KEY NOT NULL,
    holder          TEXT NOT NULL,
    expires_ms      INTEGER NOT NULL
);
