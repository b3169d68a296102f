-- +goose Up
-- Tile usage per hour: served tiles and bytes per API key × dataset, and refusals per key ×
-- reason (× dataset). hour is the bucket's start in unix seconds (UTC). Traffic without a key
-- (tile tokens, public datasets) has the nil UUID as key_id, so the conflict key has no NULL;
-- credential is 'key', 'token' or 'public'; reason is '' on served rows. No foreign keys: a
-- flush must never fail because a key or dataset was deleted meanwhile (old rows age out with
-- the retention job).
CREATE TABLE usage_hours (
    hour       bigint NOT NULL,
    key_id     text NOT NULL,
    dataset_id text NOT NULL,
    credential text NOT NULL,
    reason     text NOT NULL,
    served     bigint NOT NULL DEFAULT 0,
    bytes      bigint NOT NULL DEFAULT 0,
    refused    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, key_id, dataset_id, credential, reason)
);
CREATE INDEX usage_hours_key ON usage_hours(key_id, hour);
CREATE INDEX usage_hours_dataset ON usage_hours(dataset_id, hour);

-- Live replicas (a heartbeat each few seconds): each takes 1/N of a key's rate limit.
CREATE TABLE replicas (
    id   text PRIMARY KEY,
    seen timestamp NOT NULL
);

-- Per-key limits: null is none.
ALTER TABLE api_keys ADD COLUMN rate_limit_rps integer;
ALTER TABLE api_keys ADD COLUMN rate_limit_burst integer;
ALTER TABLE api_keys ADD COLUMN monthly_quota bigint;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN monthly_quota;
ALTER TABLE api_keys DROP COLUMN rate_limit_burst;
ALTER TABLE api_keys DROP COLUMN rate_limit_rps;
DROP TABLE replicas;
DROP TABLE usage_hours;
