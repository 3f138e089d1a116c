-- Verification letters for opt-out requests (PostgreSQL): when a privacy officer has matched
-- a request to a patient, a one-time code is posted to the address the index holds for that
-- patient; the request becomes an objection only when the code comes back (typed on the
-- public site, or read out to the privacy officer). Only a hash of the code is kept. While a
-- letter is out and not confirmed, the request is awaiting its letter code.

CREATE TABLE opt_out_letter (
    reference       TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES opt_out_request (reference),
    nhs_number      TEXT COLLATE "C" NOT NULL,
    code_hash       TEXT COLLATE "C" NOT NULL,
    sent_to         TEXT NOT NULL,
    sent_by         TEXT COLLATE "C" NOT NULL,
    sent_at         TEXT COLLATE "C" NOT NULL,
    wrong_attempts  BIGINT NOT NULL DEFAULT 0,
    confirmed_at    TEXT COLLATE "C"
);
