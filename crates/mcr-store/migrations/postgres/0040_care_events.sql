-- Care events (PostgreSQL): the times a patient's care relationships with an organisation start
-- and end, as the organisation's systems announce them (an HL7 v2 ADT feed, FHIR care-event
-- metadata read with the index sync, GP registration). Never clinical content: no diagnosis,
-- no free text beyond the names of a ward, team or service. One row per event in its source
-- (`origin`, `org_code`, `source_event_id`), so a repeated message updates it and a cancel
-- removes it. Timestamps are UTC text of one fixed width, as in 0001, with the C collation so text order is time order.

CREATE TABLE care_event (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number      TEXT COLLATE "C" NOT NULL,
    org_code        TEXT COLLATE "C" NOT NULL,
    kind            TEXT NOT NULL,
    ward            TEXT,
    team            TEXT,
    service         TEXT,
    "start"         TEXT COLLATE "C" NOT NULL,
    "end"           TEXT COLLATE "C",
    origin          TEXT COLLATE "C" NOT NULL,
    source_event_id TEXT COLLATE "C" NOT NULL,
    received_at     TEXT COLLATE "C" NOT NULL,
    UNIQUE (origin, org_code, source_event_id)
);

CREATE INDEX care_event_nhs ON care_event (nhs_number, "start", id);

-- Messages a feed sent that could not be applied (unknown patient, bad fields, a sender not
-- allowed), kept for data quality staff with the reason. Only the envelope: never the
-- message's content.
CREATE TABLE held_message (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     TEXT COLLATE "C" NOT NULL,
    channel         TEXT NOT NULL,
    sender          TEXT COLLATE "C",
    message_type    TEXT,
    control_id      TEXT COLLATE "C",
    ack_code        TEXT NOT NULL,
    reason          TEXT NOT NULL
);

CREATE INDEX held_message_at ON held_message (received_at, id);
