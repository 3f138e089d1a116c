-- Governance records (SQLite): permissions to view, care relationships recorded in the
-- gateway, objections and their overrides, emergency accesses. Append-only histories: each
-- row is written in the same transaction as its audit record. Timestamps are UTC text of one
-- fixed width, as in 0001, so text order is time order.

CREATE TABLE permission (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    nhs_number  TEXT NOT NULL,
    org_code    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    decision    TEXT NOT NULL,
    given_by    TEXT NOT NULL,
    at          TEXT NOT NULL
);

CREATE INDEX permission_nhs ON permission (nhs_number, at, id);

CREATE TABLE relationship (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    nhs_number  TEXT NOT NULL,
    org_code    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    reason      TEXT,
    "start"     TEXT NOT NULL,
    "end"       TEXT,
    recorded_by TEXT NOT NULL
);

CREATE INDEX relationship_nhs ON relationship (nhs_number, "start", id);

CREATE TABLE objection (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    nhs_number      TEXT NOT NULL,
    state           TEXT NOT NULL,
    recorded_by     TEXT NOT NULL,
    on_whose_word   TEXT NOT NULL,
    override_reason TEXT,
    by_role         TEXT,
    note            TEXT,
    at              TEXT NOT NULL
);

CREATE INDEX objection_nhs ON objection (nhs_number, at, id);

CREATE TABLE emergency_access (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    nhs_number  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    org_code    TEXT NOT NULL,
    reason_code TEXT NOT NULL,
    reason_text TEXT NOT NULL,
    started_at  TEXT NOT NULL
);

CREATE INDEX emergency_access_nhs ON emergency_access (nhs_number, started_at, id);
