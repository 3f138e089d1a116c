-- What people decided about a source record and a local identity (issue 19): the same as
-- `match_decision`, with the local identity in place of an NHS number (kept apart, so a local
-- identity is never written where an NHS number belongs). A later sync never overrides it:
-- `link` keeps the record with the local identity (or, once the local identity is resolved,
-- with the NHS number it went to); `not-a-match` and `unlink` keep the record from it (and
-- from that NHS number) for good.

CREATE TABLE local_match_decision (
    source       TEXT COLLATE "C" NOT NULL,
    local_id     TEXT COLLATE "C" NOT NULL,
    local_person BIGINT NOT NULL REFERENCES local_person (id),
    -- `link`, `not-a-match` (a pair in review) or `unlink` (a record linked to it).
    decision     TEXT NOT NULL,
    decided_by   TEXT NOT NULL,
    decided_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source, local_id, local_person)
);
