-- Figures over time, for billing: what each space held from when to when, as a step function.
-- Every transaction that writes a customer's figures (all of them, a shard's spaces, one space
-- or one asset) records one commit, and gives each space of its scope whose figures differ from
-- the space's latest step a new step, valid from that commit until the space's next step. A
-- night that changes nothing adds a commit and no step, so the steps grow with the changes,
-- not with the runs. A failed or dry run rolls back with its write and adds neither.

-- One row per transaction that wrote figures: when (the database clock once the customer's
-- commit lock is held), by which run (NULL outside a run; not a foreign key, so that pruning
-- runs leaves the commits), and which spaces it computed: `only_spaces` NULL for every space but
-- `excluded_spaces` (NULL for none), as `Spaces` has them.
CREATE TABLE storage_calc.figure_commits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer int NOT NULL,
    committed_at timestamptz NOT NULL,
    run_id bigint,
    only_spaces int[],
    excluded_spaces int[]
);

-- Every (customer, space) that ever had a step, numbered, so that each step carries a 4-byte id
-- and a report finds each space's step in force at the start of a period with one index probe.
-- A NULL space holds the billable bytes of keys under the customer's prefix outside any space.
CREATE TABLE storage_calc.figure_spaces (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer int NOT NULL,
    space int
);
CREATE UNIQUE INDEX figure_spaces_key ON storage_calc.figure_spaces (customer, coalesce(space, -1));

-- The steps: a space's figures from `valid_from` until its next step. The platform's figures
-- (images, artefact, thumbnail and, where the layout has them, adjunct bytes) and, once a
-- `--billable` run has computed the space, its billable figures (NULL before). A space whose
-- row is gone, or whose keys are all gone, steps to zeros.
CREATE TABLE storage_calc.space_figures (
    space_id int NOT NULL REFERENCES storage_calc.figure_spaces (id),
    valid_from timestamptz NOT NULL,
    commit_id bigint NOT NULL,
    images bigint NOT NULL,
    artefact_bytes bigint NOT NULL,
    thumbnail_bytes bigint NOT NULL,
    adjunct_bytes bigint,
    current_bytes bigint,
    by_storage_class jsonb,
    noncurrent_bytes bigint,
    incomplete_upload_bytes bigint,
    billed_bytes bigint,
    PRIMARY KEY (space_id, valid_from)
);
-- The commits of a period: rows are written in time order, so a BRIN index of a few pages finds
-- them, for every customer or (filtered) for one; a B-tree on (customer, committed_at) would
-- find one customer's faster and take a third of the table's size again.
CREATE INDEX figure_commits_time ON storage_calc.figure_commits USING brin (committed_at);
-- The steps within a period, for every customer: written in time order too.
CREATE INDEX space_figures_time ON storage_calc.space_figures USING brin (valid_from);
