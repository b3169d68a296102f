-- +goose Up
CREATE TABLE accounts (
    id      text PRIMARY KEY,
    name    text NOT NULL,
    created timestamp NOT NULL
);

CREATE TABLE principals (
    id         text PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    created    timestamp NOT NULL
);
CREATE INDEX principals_account ON principals(account_id);

-- Only the SHA-256 of a service token is kept; lookup_id is the public id part of the token.
CREATE TABLE service_tokens (
    lookup_id    text PRIMARY KEY,
    principal_id text NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    secret_hash  blob NOT NULL,
    created      timestamp NOT NULL,
    revoked      timestamp
);
CREATE INDEX service_tokens_principal ON service_tokens(principal_id);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token       text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text,
    user_agent  text,
    origins     text NOT NULL DEFAULT '[]',
    created     timestamp NOT NULL,
    changed     timestamp NOT NULL,
    last_used   timestamp
);
-- Keyset pagination walks (account_id, created, id).
CREATE INDEX api_keys_page ON api_keys(account_id, created, id);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE service_tokens;
DROP TABLE principals;
DROP TABLE accounts;
