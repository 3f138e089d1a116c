-- The watch's counters (PostgreSQL), shared by every gateway of a region, so a user viewing
-- patients across several gateways is counted once, and a restart forgets nothing. What they
-- hold is what the audit trail already holds (who viewed which NHS number, when), kept only
-- for the watch's window: rows older than it are deleted as the user views again, and by a
-- sweep. Times in Unix milliseconds.

-- One row per user and patient viewed within the window: the latest view.
CREATE TABLE watch_view (
    user_id     TEXT NOT NULL,
    patient     TEXT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (user_id, patient)
);
CREATE INDEX watch_view_seen ON watch_view (seen_ms);

-- When a flag was last written for a user and rule (and patient, '' for rules about the user),
-- how many like it were held back since, and how many were held back before the last one.
CREATE TABLE watch_flag (
    user_id      TEXT NOT NULL,
    rule         TEXT NOT NULL,
    patient      TEXT NOT NULL,
    last_ms      BIGINT NOT NULL,
    held         BIGINT NOT NULL,
    held_before  BIGINT NOT NULL,
    PRIMARY KEY (user_id, rule, patient)
);
CREATE INDEX watch_flag_last ON watch_flag (last_ms);

-- Count one view: the user's distinct patients seen after `p_since`, this one included, unless
-- this one would make more than `p_limit` (then it is not counted: refused). One round trip;
-- views of one user on any gateway are counted one at a time (a lock on the user for the
-- transaction). Committed without waiting for the disk (`synchronous_commit = off` for this
-- transaction only): the view's own audit record, committed durably moments later, flushes
-- it; a database crash in between loses at most the counts of views that were not served.
CREATE FUNCTION watch_count_view(p_user TEXT, p_patient TEXT, p_at BIGINT, p_since BIGINT, p_limit BIGINT)
RETURNS TABLE (distinct_patients BIGINT, refused BOOLEAN, oldest_ms BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
    seen BOOLEAN;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('watch:' || p_user, 0));
    DELETE FROM watch_view WHERE user_id = p_user AND seen_ms <= p_since;
    SELECT count(*), bool_or(patient = p_patient), min(seen_ms)
        INTO n, seen, oldest_ms
        FROM watch_view WHERE user_id = p_user;
    IF seen THEN
        UPDATE watch_view SET seen_ms = GREATEST(seen_ms, p_at)
            WHERE user_id = p_user AND patient = p_patient;
        distinct_patients := n;
        refused := false;
    ELSIF n >= p_limit THEN
        distinct_patients := n + 1;
        refused := true;
    ELSE
        INSERT INTO watch_view (user_id, patient, seen_ms) VALUES (p_user, p_patient, p_at);
        distinct_patients := n + 1;
        refused := false;
        oldest_ms := COALESCE(oldest_ms, p_at);
    END IF;
    RETURN NEXT;
END
$$;
