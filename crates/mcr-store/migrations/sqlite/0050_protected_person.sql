-- The protected person list (SQLite): staff members, public figures and others whose records
-- privacy officers want to hear about whenever they are viewed. One row per NHS number; no
-- clinical data. Every change is audited in the same transaction.

CREATE TABLE protected_person (
    nhs_number  TEXT PRIMARY KEY NOT NULL,
    category    TEXT NOT NULL CHECK (category IN ('staff', 'public-figure', 'other')),
    note        TEXT NOT NULL,
    added_by    TEXT NOT NULL,
    added_at    TEXT NOT NULL
);
