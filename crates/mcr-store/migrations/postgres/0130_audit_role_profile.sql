-- NHS CIS2 national RBAC (issue 20): the role profile (`person_roleid`) the user was working
-- in, on every audit record made for a signed-in member of staff. Records made before this
-- column, and records with no user role profile (the public site, system events), leave it
-- NULL; the chain hash covers it only when it is set, so old records verify unchanged.
ALTER TABLE audit_log ADD COLUMN role_profile_id TEXT;
