-- Pairs of a source record and a local identity that a person must look at (issue 19): the
-- same as `match_candidate`, with the local identity in place of an NHS number (kept apart,
-- so a local identity is never written where an NHS number belongs).

CREATE TABLE local_match_candidate (
    source       TEXT NOT NULL,
    local_id     TEXT NOT NULL,
    local_person INTEGER NOT NULL REFERENCES local_person (id),
    -- The match weight and the comparison vector (levels, never values).
    score        REAL NOT NULL,
    agreement    TEXT NOT NULL,
    -- `possible-twin`, `possible-parent-child`, `ambiguous` or NULL.
    guard        TEXT,
    -- The source record's demographics, shown beside the local identity's for review.
    family       TEXT NOT NULL,
    given        TEXT NOT NULL,
    birth_date   TEXT,
    gender       TEXT,
    postcode     TEXT,
    found_at     TEXT NOT NULL,
    PRIMARY KEY (source, local_id, local_person)
) WITHOUT ROWID;

CREATE INDEX local_match_candidate_person ON local_match_candidate (local_person);
