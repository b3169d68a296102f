-- +goose Up
-- Issue #20: a generated key name is unique within its account by an index, not by a scan.
-- name_generated marks the names tilegate made; a name a client chose may repeat (it always
-- could), so only generated names are under the unique index. Keys from before this migration
-- are left unmarked, with their names unchanged, even where an account holds the same generated
-- name twice (older versions could race into that): renaming a key under its owner's feet would
-- break whatever they know it by, and a new generated name still avoids every existing name of
-- the account through api_keys_name before it is inserted.
ALTER TABLE api_keys ADD COLUMN name_generated boolean NOT NULL DEFAULT false;
CREATE INDEX api_keys_name ON api_keys(account_id, name);
CREATE UNIQUE INDEX api_keys_generated_name ON api_keys(account_id, name) WHERE name_generated;

-- +goose Down
DROP INDEX api_keys_generated_name;
DROP INDEX api_keys_name;
ALTER TABLE api_keys DROP COLUMN name_generated;
