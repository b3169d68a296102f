-- +goose Up
-- Issue #20: total_count without counting the account on every page. Each account's number of
-- keys, datasets and audit events is kept here by triggers, in the transaction that inserts or
-- deletes the rows (any writer: the store, bulk fills, cascades). A kind's count is the sum of
-- its stripes: each statement adds to one stripe picked at random, so concurrent creates in one
-- account seldom wait for each other's row lock until commit.
CREATE TABLE account_counts (
    account_id uuid NOT NULL,
    kind       text NOT NULL,
    stripe     integer NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (account_id, kind, stripe)
);

-- +goose StatementBegin
CREATE FUNCTION account_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n)
    SELECT r.account_id, TG_TABLE_NAME, s.stripe, count(*)
    FROM new_rows r, (SELECT floor(random() * 16)::integer AS stripe) s
    GROUP BY r.account_id, s.stripe
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = account_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION account_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n)
    SELECT r.account_id, TG_TABLE_NAME, s.stripe, -count(*)
    FROM old_rows r, (SELECT floor(random() * 16)::integer AS stripe) s
    GROUP BY r.account_id, s.stripe
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = account_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER api_keys_counted_insert AFTER INSERT ON api_keys REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_inserted();
CREATE TRIGGER api_keys_counted_delete AFTER DELETE ON api_keys REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_deleted();
CREATE TRIGGER datasets_counted_insert AFTER INSERT ON datasets REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_inserted();
CREATE TRIGGER datasets_counted_delete AFTER DELETE ON datasets REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_deleted();
CREATE TRIGGER audit_events_counted_insert AFTER INSERT ON audit_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_inserted();
CREATE TRIGGER audit_events_counted_delete AFTER DELETE ON audit_events REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION account_counts_deleted();

INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'api_keys', 0, count(*) FROM api_keys GROUP BY account_id;
INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'datasets', 0, count(*) FROM datasets GROUP BY account_id;
INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'audit_events', 0, count(*) FROM audit_events GROUP BY account_id;

-- +goose Down
DROP TRIGGER audit_events_counted_delete ON audit_events;
DROP TRIGGER audit_events_counted_insert ON audit_events;
DROP TRIGGER datasets_counted_delete ON datasets;
DROP TRIGGER datasets_counted_insert ON datasets;
DROP TRIGGER api_keys_counted_delete ON api_keys;
DROP TRIGGER api_keys_counted_insert ON api_keys;
DROP FUNCTION account_counts_deleted();
DROP FUNCTION account_counts_inserted();
DROP TABLE account_counts;
