-- SMART App Launch (SQLite): each `launch` a host system hands the gateway may start one
-- launch, on any gateway. The key is a SHA-256 hash of the host's issuer and the launch value
-- (the value itself is never stored); a row is forgotten once it has expired, by when the
-- host's own authorization server no longer honours that launch either. Times in Unix ms.
CREATE TABLE launch_used (
    key_hash        TEXT PRIMARY KEY NOT NULL,
    expires_ms      INTEGER NOT NULL
);
CREATE INDEX launch_used_expires ON launch_used (expires_ms);
