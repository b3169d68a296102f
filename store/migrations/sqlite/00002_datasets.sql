-- +goose Up
CREATE TABLE datasets (
    id             text PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name           text NOT NULL,
    description    text,
    kind           text NOT NULL CHECK (kind IN ('vector', 'raster')),
    visibility     text NOT NULL CHECK (visibility IN ('private', 'restricted', 'public')),
    format         text NOT NULL,
    minzoom        integer NOT NULL,
    maxzoom        integer NOT NULL,
    bounds         text,
    center         text,
    attribution    text,
    vector_layers  text,
    tile_size      integer,
    access_version integer NOT NULL DEFAULT 1,
    tile_file      text,
    created        timestamp NOT NULL,
    changed        timestamp NOT NULL
);
CREATE INDEX datasets_page ON datasets(account_id, created, id);

-- A grant shares a dataset with another account, or lets a principal of its own account use it
-- when it is restricted: exactly one of account_id and principal_id is set.
CREATE TABLE grants (
    id           text PRIMARY KEY,
    dataset_id   text NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    account_id   text REFERENCES accounts(id) ON DELETE CASCADE,
    principal_id text REFERENCES principals(id) ON DELETE CASCADE,
    created      timestamp NOT NULL,
    CHECK ((account_id IS NULL) <> (principal_id IS NULL))
);
CREATE UNIQUE INDEX grants_account ON grants(dataset_id, account_id) WHERE account_id IS NOT NULL;
CREATE UNIQUE INDEX grants_principal ON grants(dataset_id, principal_id) WHERE principal_id IS NOT NULL;
CREATE INDEX grants_grantee_account ON grants(account_id);

-- Process-wide settings, such as the generated tile signing key when none is configured.
CREATE TABLE settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);

-- +goose Down
DROP TABLE settings;
DROP TABLE grants;
DROP TABLE datasets;
