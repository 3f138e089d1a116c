-- What the Personal Demographics Service (or a source's own security label) says of an index
-- patient (issue 19, PDS trace): restricted (location never shown) and deceased. One row per
-- NHS number; no clinical data.

CREATE TABLE patient_status (
    nhs_number  TEXT PRIMARY KEY NOT NULL,
    -- 1: restricted (PDS `meta.security` R, or a source's R/V label): address and registered
    -- practice are never shown.
    restricted  INTEGER NOT NULL,
    -- `deceasedDateTime` as PDS sent it, or NULL.
    deceased    TEXT,
    -- `pds` or `source-label`: who said so.
    said_by     TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;
