-- The platform's layouts: in the current one space 0 is a real space (the stub space) and the
-- customer-level row is at "Space" IS NULL, so the history keeps the customer-level row as a
-- NULL space in every layout, and the adjunct figures where the layout has them.
ALTER TABLE storage_calc.changes DROP CONSTRAINT changes_pkey;
ALTER TABLE storage_calc.changes ALTER COLUMN space DROP NOT NULL;
-- Every release before this one wrote the seed layout only, whose customer-level row is space 0.
UPDATE storage_calc.changes SET space = NULL WHERE space = 0;
ALTER TABLE storage_calc.changes
    ADD COLUMN adjuncts_before bigint,
    ADD COLUMN adjuncts_after bigint,
    ADD COLUMN adjunct_size_before bigint,
    ADD COLUMN adjunct_size_after bigint;
CREATE UNIQUE INDEX changes_row ON storage_calc.changes (run_id, customer, coalesce(space, -1));
