-- +goose Up
-- Issue #20: total_count without counting the account on every page. Each account's number of
-- keys, datasets and audit events is kept here by triggers, in the transaction that inserts or
-- deletes the rows (any writer: the store, bulk fills, cascades). SQLite has one writer at a
-- time, so one row per account and kind (stripe 0) never makes writers wait; the stripe column
-- keeps the PostgreSQL table's shape.
CREATE TABLE account_counts (
    account_id text NOT NULL,
    kind       text NOT NULL,
    stripe     integer NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (account_id, kind, stripe)
);

-- +goose StatementBegin
CREATE TRIGGER api_keys_counted_insert AFTER INSERT ON api_keys BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (NEW.account_id, 'api_keys', 0, 1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (1);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER api_keys_counted_delete AFTER DELETE ON api_keys BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (OLD.account_id, 'api_keys', 0, -1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (-1);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER datasets_counted_insert AFTER INSERT ON datasets BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (NEW.account_id, 'datasets', 0, 1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (1);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER datasets_counted_delete AFTER DELETE ON datasets BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (OLD.account_id, 'datasets', 0, -1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (-1);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_events_counted_insert AFTER INSERT ON audit_events BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (NEW.account_id, 'audit_events', 0, 1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (1);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_events_counted_delete AFTER DELETE ON audit_events BEGIN
    INSERT INTO account_counts (account_id, kind, stripe, n) VALUES (OLD.account_id, 'audit_events', 0, -1)
    ON CONFLICT (account_id, kind, stripe) DO UPDATE SET n = n + (-1);
END;
-- +goose StatementEnd

INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'api_keys', 0, count(*) FROM api_keys WHERE true GROUP BY account_id;
INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'datasets', 0, count(*) FROM datasets WHERE true GROUP BY account_id;
INSERT INTO account_counts (account_id, kind, stripe, n)
SELECT account_id, 'audit_events', 0, count(*) FROM audit_events WHERE true GROUP BY account_id;

-- +goose Down
DROP TRIGGER audit_events_counted_delete;
DROP TRIGGER audit_events_counted_insert;
DROP TRIGGER datasets_counted_delete;
DROP TRIGGER datasets_counted_insert;
DROP TRIGGER api_keys_counted_delete;
DROP TRIGGER api_keys_counted_insert;
DROP TABLE account_counts;
