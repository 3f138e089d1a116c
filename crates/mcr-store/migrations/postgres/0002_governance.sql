-- Governance records (PostgreSQL): permissions to view, care relationships recorded in the
-- gateway, objections and their overrides, emergency accesses. Append-only histories: each
-- row is written in the same transaction as its audit record. Timestamps are UTC text of one
-- fixed width, as in 0001, with the C collation so text order is time order.

CREATE TABLE permission (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number  TEXT COLLATE "C" NOT NULL,
    org_code    TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    decision    TEXT NOT NULL,
    given_by    TEXT NOT NULL,
    at          TEXT COLLATE "C" NOT NULL
);

CREATE INDEX permission_nhs ON permission (nhs_number, at, id);

CREATE TABLE relationship (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number  TEXT COLLATE "C" NOT NULL,
    org_code    TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT COLLATE "C",
    reason      TEXT,
    "start"     TEXT COLLATE "C" NOT NULL,
    "end"       TEXT COLLATE "C",
    recorded_by TEXT COLLATE "C" NOT NULL
);

CREATE INDEX relationship_nhs ON relationship (nhs_number, "start", id);

CREATE TABLE objection (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number      TEXT COLLATE "C" NOT NULL,
    state           TEXT NOT NULL,
    recorded_by     TEXT COLLATE "C" NOT NULL,
    on_whose_word   TEXT NOT NULL,
    override_reason TEXT,
    by_role         TEXT,
    note            TEXT,
    at              TEXT COLLATE "C" NOT NULL
);

CREATE INDEX objection_nhs ON objection (nhs_number, at, id);

CREATE TABLE emergency_access (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number  TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    org_code    TEXT COLLATE "C" NOT NULL,
    reason_code TEXT NOT NULL,
    reason_text TEXT NOT NULL,
    started_at  TEXT COLLATE "C" NOT NULL
);

CREATE INDEX emergency_access_nhs ON emergency_access (nhs_number, started_at, id);
