-- The first line of a patient's address (house number or name, and street), normalised
-- (`12A HIGH ST`), for patient matching to compare (issue 19): never shown, never searched.
-- Not kept for a patient a source labels restricted. Rows written before it have none:
-- missing, no evidence either way, until the next sync writes it.
ALTER TABLE patient ADD COLUMN address_line TEXT;
ALTER TABLE patient_merge ADD COLUMN address_line TEXT;
ALTER TABLE local_person ADD COLUMN address_line TEXT;
