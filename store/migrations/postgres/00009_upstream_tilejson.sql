-- +goose Up
-- The upstream's own TileJSON URL, read when a create or change sends it (issue #19).
ALTER TABLE datasets ADD COLUMN upstream_tilejson text;

-- +goose Down
ALTER TABLE datasets DROP COLUMN upstream_tilejson;
