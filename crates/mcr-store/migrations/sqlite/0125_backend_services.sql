-- Backend services (SMART): what every gateway of a region must share so that any of them
-- refuses a replayed client assertion and accepts a token another one issued. Times in Unix
-- milliseconds.

-- Each client assertion's `jti`, remembered until the assertion's own `exp` (after which
-- the assertion is refused as expired anyway).
CREATE TABLE client_assertion (
    client_id       TEXT NOT NULL,
    jti             TEXT NOT NULL,
    expires_ms      INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_expires ON client_assertion (expires_ms);

-- Access tokens issued to backend clients, by the SHA-256 of the token (never the token):
-- the client, its granted scopes and the end user it acts for, as the web layer's JSON.
CREATE TABLE system_token (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    data            TEXT NOT NULL,
    expires_ms      INTEGER NOT NULL
);
CREATE INDEX system_token_expires ON system_token (expires_ms);
