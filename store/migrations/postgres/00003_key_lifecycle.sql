-- +goose Up
-- Key lifecycle (issue #10): expiry, disabling, dataset scope, IP ranges, rotation with grace.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN enabled boolean NOT NULL DEFAULT true;
-- dataset_scoped false: every dataset the account may use; true: only those in api_key_datasets.
ALTER TABLE api_keys ADD COLUMN dataset_scoped boolean NOT NULL DEFAULT false;
-- NULL: any client address; otherwise a JSON array of normalised CIDRs.
ALTER TABLE api_keys ADD COLUMN ip_ranges jsonb;
-- A rotated key's previous token works until previous_token_expires_at; only its SHA-256 is kept.
ALTER TABLE api_keys ADD COLUMN previous_token_hash bytea;
ALTER TABLE api_keys ADD COLUMN previous_token_expires_at timestamptz;
CREATE UNIQUE INDEX api_keys_previous_token ON api_keys(previous_token_hash);

-- A key's dataset scope. Deleting a dataset drops it from every key's list (the cascade), and
-- writing an id races a delete safely: the insert's foreign key check waits for the delete.
CREATE TABLE api_key_datasets (
    key_id     uuid NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    dataset_id uuid NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    position   integer NOT NULL,
    PRIMARY KEY (key_id, dataset_id)
);
CREATE INDEX api_key_datasets_dataset ON api_key_datasets(dataset_id);

-- The audit trail: who changed what in an account, written in the change's own transaction.
CREATE TABLE audit_events (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    actor_id    uuid,
    actor_name  text,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   uuid NOT NULL,
    changes     jsonb NOT NULL
);
-- Keyset pagination walks (account_id, at, id) newest first; retention prunes by at.
CREATE INDEX audit_events_page ON audit_events(account_id, at, id);
CREATE INDEX audit_events_at ON audit_events(at);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE api_key_datasets;
DROP INDEX api_keys_previous_token;
ALTER TABLE api_keys DROP COLUMN previous_token_expires_at;
ALTER TABLE api_keys DROP COLUMN previous_token_hash;
ALTER TABLE api_keys DROP COLUMN ip_ranges;
ALTER TABLE api_keys DROP COLUMN dataset_scoped;
ALTER TABLE api_keys DROP COLUMN enabled;
ALTER TABLE api_keys DROP COLUMN expires_at;
