-- +goose Up
-- Issue #19: a dataset's tiles can come from an upstream tile server (an XYZ URL template) instead
-- of an uploaded file. upstream_headers holds the headers sent upstream, sealed (package sealed:
-- AES-GCM under a key derived from the signing keys), never in plain text; upstream_missing is
-- what an upstream 404/204 becomes: 'empty' (204, as a file without that tile) or 'not_found'.
ALTER TABLE datasets ADD COLUMN upstream_url text;
ALTER TABLE datasets ADD COLUMN upstream_headers text;
ALTER TABLE datasets ADD COLUMN upstream_missing text;

-- +goose Down
ALTER TABLE datasets DROP COLUMN upstream_missing;
ALTER TABLE datasets DROP COLUMN upstream_headers;
ALTER TABLE datasets DROP COLUMN upstream_url;
