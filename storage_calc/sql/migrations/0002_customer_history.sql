-- The history of every customer of a run, the run's totals of orphans, customers and drift, and
-- an index for the history's reads by time. IF NOT EXISTS throughout, because releases from
-- before schema versions may have made any of it already.
ALTER TABLE storage_calc.runs
    ADD COLUMN IF NOT EXISTS orphan_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS unattributed_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS customers int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS customers_failed int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS customers_skipped int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS drift_bytes bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS runs_started ON storage_calc.runs (started);

CREATE TABLE IF NOT EXISTS storage_calc.customer_runs (
    run_id bigint NOT NULL REFERENCES storage_calc.runs (id) ON DELETE CASCADE,
    customer int NOT NULL,
    space int,
    asset text,
    outcome text NOT NULL,
    objects bigint NOT NULL,
    bytes bigint NOT NULL,
    assets bigint NOT NULL,
    orphans bigint NOT NULL,
    orphan_bytes bigint NOT NULL,
    unattributed bigint NOT NULL,
    seconds double precision NOT NULL,
    error text,
    PRIMARY KEY (run_id, customer)
);
CREATE INDEX IF NOT EXISTS customer_runs_customer ON storage_calc.customer_runs (customer, run_id);
