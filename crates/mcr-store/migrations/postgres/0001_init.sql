-- The patient index and the audit trail (PostgreSQL).
-- Timestamps are UTC text of one fixed width (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`), as on SQLite:
-- text order is time order, and a value reads back exactly as written (nanoseconds included),
-- which the audit hash chain needs. Text columns use the C collation so order is byte order.

CREATE TABLE patient (
    nhs_number    TEXT COLLATE "C" PRIMARY KEY,
    family        TEXT NOT NULL,
    given         TEXT NOT NULL,
    family_norm   TEXT COLLATE "C" NOT NULL,
    given_norm    TEXT COLLATE "C" NOT NULL,
    birth_date    DATE NOT NULL,
    gender        TEXT,
    postcode      TEXT,
    postcode_norm TEXT COLLATE "C",
    gp_practice   TEXT,
    updated_at    TEXT COLLATE "C" NOT NULL
);

CREATE INDEX patient_family_birth ON patient (family_norm, birth_date);

CREATE TABLE source_link (
    source     TEXT COLLATE "C" NOT NULL,
    local_id   TEXT COLLATE "C" NOT NULL,
    nhs_number TEXT COLLATE "C" NOT NULL,
    method     TEXT NOT NULL,
    family     TEXT NOT NULL,
    given      TEXT NOT NULL,
    birth_date DATE,
    postcode   TEXT,
    linked_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, local_id)
);

CREATE INDEX source_link_nhs ON source_link (nhs_number, source);

CREATE TABLE unmatched_record (
    source     TEXT COLLATE "C" NOT NULL,
    local_id   TEXT COLLATE "C" NOT NULL,
    reason     TEXT NOT NULL,
    candidates BIGINT NOT NULL,
    seen_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, local_id)
);

CREATE TABLE sync_state (
    source    TEXT COLLATE "C" PRIMARY KEY,
    watermark TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq            BIGINT PRIMARY KEY,
    at             TEXT COLLATE "C" NOT NULL,
    correlation_id TEXT NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL,
    org_code       TEXT COLLATE "C" NOT NULL,
    patient        TEXT COLLATE "C",
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
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
