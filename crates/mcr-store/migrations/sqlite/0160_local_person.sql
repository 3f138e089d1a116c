-- Local identities (issue 19): an index person the region made from a source record that
-- carries no NHS number and matched nobody, so later records can link to it. Kept apart from
-- `patient` (keyed by NHS number) on purpose: nothing keyed by an NHS number (opt-outs,
-- permissions, care events, record views) can name a local identity by accident. Its
-- identifier is `L` and nine digits from `id` (never a valid NHS number). No clinical data.

CREATE TABLE local_person (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The source record it was made from.
    origin_source   TEXT NOT NULL,
    origin_local_id TEXT NOT NULL,
    -- The demographics matching compares (the origin record's, refreshed when it changes).
    family          TEXT NOT NULL,
    given           TEXT NOT NULL,
    family_norm     TEXT NOT NULL,
    given_norm      TEXT NOT NULL,
    birth_date      TEXT NOT NULL,
    gender          TEXT,
    postcode        TEXT,
    postcode_norm   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    -- Once the person is found to have an NHS number: where it went, how, when, and how many
    -- links moved there. A resolved local identity is never matched again.
    resolved_to     TEXT,
    resolved_method TEXT,
    resolved_at     TEXT,
    links_moved     INTEGER
);

-- A source record makes at most one open local identity (a re-sync makes no second one).
CREATE UNIQUE INDEX local_person_origin ON local_person (origin_source, origin_local_id)
    WHERE resolved_to IS NULL;
CREATE INDEX local_person_family_birth ON local_person (family_norm, birth_date);

-- Source records linked to a local identity (a record is linked to an NHS number in
-- `source_link` or to a local identity here, never both).
CREATE TABLE local_link (
    source       TEXT NOT NULL,
    local_id     TEXT NOT NULL,
    local_person INTEGER NOT NULL REFERENCES local_person (id),
    -- `local-identity` (the record it was made from) or `demographics`.
    method       TEXT NOT NULL,
    family       TEXT NOT NULL,
    given        TEXT NOT NULL,
    birth_date   TEXT,
    postcode     TEXT,
    linked_at    TEXT NOT NULL,
    PRIMARY KEY (source, local_id)
) WITHOUT ROWID;

CREATE INDEX local_link_person ON local_link (local_person);
