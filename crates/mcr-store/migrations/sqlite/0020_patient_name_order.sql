-- Demographic search by family name alone or with a given-name prefix walks this index in
-- result order (the table is WITHOUT ROWID, so nhs_number ends every index entry) instead of
-- sorting every patient with a common family name.
CREATE INDEX patient_family_given ON patient (family_norm, given_norm, birth_date);
