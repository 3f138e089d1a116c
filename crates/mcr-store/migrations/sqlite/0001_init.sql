-- The patient index and the audit trail (SQLite).
-- Timestamps are UTC text of one fixed width (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`), so text order
-- is time order and a value reads back exactly as written (the audit hash covers `at`).

CREATE TABLE patient (
    nhs_number    TEXT PRIMARY KEY NOT NULL,
    family        TEXT NOT NULL,
    given         TEXT NOT NULL,
    family_norm   TEXT NOT NULL,
    given_norm    TEXT NOT NULL,
    birth_date    TEXT NOT NULL,
    gender        TEXT,
    postcode      TEXT,
    postcode_norm TEXT,
    gp_practice   TEXT,
    updated_at    TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX patient_family_birth ON patient (family_norm, birth_date);

CREATE TABLE source_link (
    source     TEXT NOT NULL,
    local_id   TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    method     TEXT NOT NULL,
    family     TEXT NOT NULL,
    given      TEXT NOT NULL,
    birth_date TEXT,
    postcode   TEXT,
    linked_at  TEXT NOT NULL,
    PRIMARY KEY (source, local_id)
) WITHOUT ROWID;

CREATE INDEX source_link_nhs ON source_link (nhs_number, source);

CREATE TABLE unmatched_record (
    source     TEXT NOT NULL,
    local_id   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    candidates INTEGER NOT NULL,
    seen_at    TEXT NOT NULL,
    PRIMARY KEY (source, local_id)
) WITHOUT ROWID;

CREATE TABLE sync_state (
    source    TEXT PRIMARY KEY NOT NULL,
    watermark TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY NOT NULL,
    at             TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    org_code       TEXT NOT NULL,
    patient        TEXT,
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    payload        TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);

CREATE INDEX audit_log_patient ON audit_log (patient, seq);
CREATE INDEX audit_log_user ON audit_log (user_id, seq);
CREATE INDEX audit_log_org ON audit_log (org_code, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Append-only: the trail is never edited or cut in place.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
