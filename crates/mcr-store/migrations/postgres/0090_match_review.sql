-- Probabilistic matching (issue 19): pairs of a source record and an index patient that a
-- person must look at, and the decisions people made about pairs (kept across resyncs).

CREATE TABLE match_candidate (
    source      TEXT COLLATE "C" NOT NULL,
    local_id    TEXT COLLATE "C" NOT NULL,
    nhs_number  TEXT COLLATE "C" NOT NULL,
    -- `review` (the score fell between the thresholds, or a safety rule held it back),
    -- `possible-wrong-nhs-number` (the NHS numbers agree, the person does not).
    kind        TEXT NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    -- The comparison vector, field by field (`family=exact given=typo ...`): never values.
    agreement   TEXT NOT NULL,
    -- `possible-twin`, `possible-parent-child`, `ambiguous` or NULL.
    guard       TEXT,
    -- The source record's demographics, shown beside the index patient's for review.
    family      TEXT NOT NULL,
    given       TEXT NOT NULL,
    birth_date  DATE,
    gender      TEXT,
    postcode    TEXT,
    found_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, local_id, nhs_number)
);

CREATE INDEX match_candidate_nhs ON match_candidate (nhs_number);
CREATE INDEX match_candidate_score ON match_candidate (score DESC);

CREATE TABLE match_decision (
    source      TEXT COLLATE "C" NOT NULL,
    local_id    TEXT COLLATE "C" NOT NULL,
    nhs_number  TEXT COLLATE "C" NOT NULL,
    -- `link` (confirmed) or `not-a-match`.
    decision    TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    decided_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, local_id, nhs_number)
);
