-- +goose Up
-- Issue #20: a dataset's grants are listed in (created, id) order; the unique grant indexes are
-- partial (account or principal grants), so neither can answer that list.
CREATE INDEX grants_page ON grants(dataset_id, created, id);

-- +goose Down
DROP INDEX grants_page;
