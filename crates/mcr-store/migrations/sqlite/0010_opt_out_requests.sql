-- Opt-out requests from the public site (SQLite): what a member of the public typed, kept for
-- staff to verify against the patient index. A request is received, then verified (it became
-- an objection in the register, for the NHS number it matched) or rejected (it could not be
-- matched), once. Its reference is what the person is shown and quotes.

CREATE TABLE opt_out_request (
    reference      TEXT PRIMARY KEY NOT NULL,
    received_at    TEXT NOT NULL,
    given_name     TEXT NOT NULL,
    family_name    TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    nhs_number     TEXT,
    postcode       TEXT NOT NULL,
    contact        TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'verified', 'rejected')),
    matched_nhs    TEXT,
    decided_by     TEXT,
    decided_at     TEXT,
    decision_note  TEXT
);

CREATE INDEX opt_out_request_state ON opt_out_request (state, received_at);
