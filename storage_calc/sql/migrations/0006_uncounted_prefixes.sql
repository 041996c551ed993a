-- The prefixes outside every customer that a run could not list, each with why: while this is
-- not empty, the run's unattributed figures are incomplete (too low), never a true zero.
ALTER TABLE storage_calc.runs ADD COLUMN uncounted text[] NOT NULL DEFAULT '{}';
