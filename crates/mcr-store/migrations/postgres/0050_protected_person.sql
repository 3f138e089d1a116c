-- The protected person list (PostgreSQL): staff members, public figures and others whose
-- records privacy officers want to hear about whenever they are viewed. One row per NHS
-- number; no clinical data. Every change is audited in the same transaction. Timestamps are
-- UTC text of one fixed width with the C collation, as elsewhere.

CREATE TABLE protected_person (
    nhs_number  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    category    TEXT NOT NULL CHECK (category IN ('staff', 'public-figure', 'other')),
    note        TEXT NOT NULL,
    added_by    TEXT COLLATE "C" NOT NULL,
    added_at    TEXT COLLATE "C" NOT NULL
);
