-- Signed checkpoints of the audit chain (PostgreSQL): every N records, and on demand, the
-- head (seq, hash) is signed with the gateway's Ed25519 audit key. A checkpoint vouches for
-- the whole chain up to its record, so a trail re-hashed after an edit no longer matches it.
-- Append-only, like the trail.

CREATE TABLE audit_checkpoint (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    at         TEXT COLLATE "C" NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE TRIGGER audit_checkpoint_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Audit searches by action (the review queue, a patient's access history).
CREATE INDEX audit_log_action ON audit_log (action, at);
