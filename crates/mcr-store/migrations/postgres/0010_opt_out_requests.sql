-- Opt-out requests from the public site (PostgreSQL): what a member of the public typed, kept
-- for staff to verify against the patient index. A request is received, then verified (it
-- became an objection in the register, for the NHS number it matched) or rejected (it could
-- not be matched), once. Its reference is what the person is shown and quotes. Timestamps are
-- UTC text of one fixed width with the C collation, as elsewhere.

CREATE TABLE opt_out_request (
    reference      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    received_at    TEXT COLLATE "C" NOT NULL,
    given_name     TEXT NOT NULL,
    family_name    TEXT NOT NULL,
    birth_date     TEXT COLLATE "C" NOT NULL,
    nhs_number     TEXT COLLATE "C",
    postcode       TEXT NOT NULL,
    contact        TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'verified', 'rejected')),
    matched_nhs    TEXT COLLATE "C",
    decided_by     TEXT COLLATE "C",
    decided_at     TEXT COLLATE "C",
    decision_note  TEXT
);

CREATE INDEX opt_out_request_state ON opt_out_request (state, received_at);
