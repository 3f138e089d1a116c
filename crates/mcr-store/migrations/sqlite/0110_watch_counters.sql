-- The watch's counters (SQLite), kept in the store so a restart forgets nothing. What they hold
-- is what the audit trail already holds (who viewed which NHS number, when), kept only for the
-- watch's window: rows older than it are deleted as the user views again, and by a sweep.
-- Times in Unix milliseconds.

-- One row per user and patient viewed within the window: the latest view.
CREATE TABLE watch_view (
    user_id     TEXT NOT NULL,
    patient     TEXT NOT NULL,
    seen_ms     INTEGER NOT NULL,
    PRIMARY KEY (user_id, patient)
) WITHOUT ROWID;
CREATE INDEX watch_view_seen ON watch_view (seen_ms);

-- When a flag was last written for a user and rule (and patient, '' for rules about the user),
-- how many like it were held back since, and how many were held back before the last one.
CREATE TABLE watch_flag (
    user_id      TEXT NOT NULL,
    rule         TEXT NOT NULL,
    patient      TEXT NOT NULL,
    last_ms      INTEGER NOT NULL,
    held         INTEGER NOT NULL,
    held_before  INTEGER NOT NULL,
    PRIMARY KEY (user_id, rule, patient)
) WITHOUT ROWID;
CREATE INDEX watch_flag_last ON watch_flag (last_ms);
