-- The project's own schema as its first release created it: runs, the CustomerStorage rows each
-- run changed, and the orphans it found. IF NOT EXISTS throughout, because a database made by a
-- release from before schema versions has these tables already and no record of them.
CREATE SCHEMA IF NOT EXISTS storage_calc;

CREATE TABLE IF NOT EXISTS storage_calc.runs (
    id bigserial PRIMARY KEY,
    started timestamptz NOT NULL DEFAULT now(),
    finished timestamptz,
    scope text NOT NULL,
    shard text,
    outcome text NOT NULL DEFAULT 'running',
    objects bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    assets bigint NOT NULL DEFAULT 0,
    orphans bigint NOT NULL DEFAULT 0,
    unattributed bigint NOT NULL DEFAULT 0,
    error text
);

CREATE TABLE IF NOT EXISTS storage_calc.changes (
    run_id bigint NOT NULL REFERENCES storage_calc.runs (id) ON DELETE CASCADE,
    customer int NOT NULL,
    space int NOT NULL,
    images_before bigint NOT NULL,
    images_after bigint NOT NULL,
    size_before bigint NOT NULL,
    size_after bigint NOT NULL,
    thumbnails_before bigint NOT NULL,
    thumbnails_after bigint NOT NULL,
    PRIMARY KEY (run_id, customer, space)
);

CREATE TABLE IF NOT EXISTS storage_calc.orphans (
    run_id bigint NOT NULL REFERENCES storage_calc.runs (id) ON DELETE CASCADE,
    customer int NOT NULL,
    space int NOT NULL,
    objects bigint NOT NULL,
    bytes bigint NOT NULL,
    assets bigint NOT NULL,
    examples text[] NOT NULL,
    PRIMARY KEY (run_id, customer, space)
);
