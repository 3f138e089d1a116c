-- Who may lift an objection, and on what (SQLite).
-- - An override of an objection runs out: `ends_at` (UTC text, as in 0001).
-- - Permission given on the patient's behalf (a representative, or a best-interests decision)
--   carries a coded reason and the words of the person who recorded it.
-- - A request from the public site is to opt out or to opt back in (`kind`).

ALTER TABLE objection ADD COLUMN ends_at TEXT;
ALTER TABLE permission ADD COLUMN reason_code TEXT;
ALTER TABLE permission ADD COLUMN reason_text TEXT;
ALTER TABLE opt_out_request ADD COLUMN kind TEXT NOT NULL DEFAULT 'opt-out' CHECK (kind IN ('opt-out', 'opt-in'));
