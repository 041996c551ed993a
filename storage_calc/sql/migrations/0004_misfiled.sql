-- "Images" rows whose Id names another customer or space than their own columns: counted
-- nowhere, and recorded per customer of a run (how many, a few ids) and per run.
ALTER TABLE storage_calc.runs ADD COLUMN misfiled bigint NOT NULL DEFAULT 0;
ALTER TABLE storage_calc.customer_runs
    ADD COLUMN misfiled bigint NOT NULL DEFAULT 0,
    ADD COLUMN misfiled_examples text[] NOT NULL DEFAULT '{}';
