-- Signed checkpoints of the audit chain (SQLite): every N records, and on demand, the head
-- (seq, hash) is signed with the gateway's Ed25519 audit key. A checkpoint vouches for the
-- whole chain up to its record, so a trail re-hashed after an edit no longer matches it.
-- Append-only, like the trail.

CREATE TABLE audit_checkpoint (
    seq        INTEGER PRIMARY KEY NOT NULL,
    hash       TEXT NOT NULL,
    at         TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoint is append-only');
END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoint is append-only');
END;

-- Audit searches by action (the review queue, a patient's access history).
CREATE INDEX audit_log_action ON audit_log (action, at);
