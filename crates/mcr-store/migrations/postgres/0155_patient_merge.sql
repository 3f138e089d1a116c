-- Merges of index persons (PostgreSQL; issue 19): two NHS numbers found to be one person (a superseded
-- number, a duplicate). The retired number's index row is kept here, not in `patient`, so
-- matching, search and the record locator see one person; its source links, care events and
-- care relationships move to the survivor, each listed in `patient_merge_item`, so an unmerge
-- moves back exactly what the merge moved. Governance written for the retired number while
-- the merge stands is written for the survivor. No clinical data.

CREATE TABLE patient_merge (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    retired         TEXT COLLATE "C" NOT NULL,
    survivor        TEXT COLLATE "C" NOT NULL,
    reason          TEXT NOT NULL,
    merged_by       TEXT NOT NULL,
    merged_at       TEXT COLLATE "C" NOT NULL,
    -- The retired number's index row as the merge found it (restored by an unmerge).
    family          TEXT NOT NULL,
    given           TEXT NOT NULL,
    family_norm     TEXT NOT NULL,
    given_norm      TEXT NOT NULL,
    birth_date      DATE NOT NULL,
    gender          TEXT,
    postcode        TEXT,
    postcode_norm   TEXT,
    gp_practice     TEXT,
    patient_updated_at TEXT NOT NULL,
    -- What the merge did, counted.
    links_moved         BIGINT NOT NULL DEFAULT 0,
    care_events_moved   BIGINT NOT NULL DEFAULT 0,
    relationships_moved BIGINT NOT NULL DEFAULT 0,
    -- 1 when the retired number's standing objection was carried to the survivor.
    objection_carried   BIGINT NOT NULL DEFAULT 0,
    protection_carried  BIGINT NOT NULL DEFAULT 0,
    pairs_dropped       BIGINT NOT NULL DEFAULT 0,
    -- The unmerge, once done.
    undone_by       TEXT,
    undone_at       TEXT COLLATE "C",
    undo_reason     TEXT,
    links_back          BIGINT,
    sent_to_review      BIGINT,
    care_events_back    BIGINT,
    relationships_back  BIGINT,
    -- 1 when an objection recorded on the merged person was carried back to the retired number.
    objection_carried_back BIGINT
);

-- A number is retired by at most one standing merge.
CREATE UNIQUE INDEX patient_merge_retired ON patient_merge (retired) WHERE undone_at IS NULL;
CREATE INDEX patient_merge_survivor ON patient_merge (survivor, id);

-- What one merge moved or carried, one row each: `link` (a source link moved), `kept-link`
-- (a link the survivor had already), `care-event` and `relationship` (by id), `objection` and
-- `protection` (rows carried to the survivor), `review` (a link sent to review by the unmerge),
-- `objection-back` (an objection carried to the retired number by the unmerge).
CREATE TABLE patient_merge_item (
    merge_id    BIGINT NOT NULL REFERENCES patient_merge (id),
    kind        TEXT NOT NULL,
    source      TEXT,
    local_id    TEXT,
    row_id      BIGINT
);

CREATE INDEX patient_merge_item_merge ON patient_merge_item (merge_id, kind);
