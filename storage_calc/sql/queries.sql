-- Named queries used by storage_calc.db. Each block starts with "-- name: <name>", then a
-- comment line saying what it does, then the SQL. Values are always bound as %(name)s.
-- The spaces of a customer a statement covers are %(only)s (NULL: every space) but not those of
-- %(excluded)s, which another shard computes; a NULL %(asset)s means every asset of them.
-- A line ending in "-- with: <feature>" is kept only where the platform's layout has that
-- feature (a field of storage_calc.model.Layout), one ending in "-- without: <feature>" only
-- where it has not.

-- name: backend_pid
-- The backend serving this session.
SELECT pg_backend_pid();

-- name: server_now
-- The database clock: every timestamp the job writes comes from it, never from the host.
SELECT now();

-- name: platform_tables
-- Which of the platform's tables exist (in the connection's search path).
SELECT name FROM unnest(%(names)s::text[]) AS name
WHERE to_regclass(quote_ident(name)) IS NOT NULL
ORDER BY name;

-- name: platform_columns
-- The columns of the platform's tables whose layout the job depends on, with their nullability.
SELECT c.relname AS table_name, a.attname AS column_name, NOT a.attnotnull AS nullable
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
WHERE a.attrelid IN (to_regclass('"ImageStorage"'), to_regclass('"CustomerStorage"'),
                     to_regclass('"Adjuncts"'))
  AND a.attnum > 0 AND NOT a.attisdropped;

-- name: unique_keys
-- The unique indexes (primary keys included) of ImageStorage and CustomerStorage: their
-- columns, sorted, and the predicate of a partial index.
SELECT c.relname AS table_name, ic.relname AS index_name,
       array_agg(a.attname::text ORDER BY a.attname) AS columns,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indisunique AND i.indexprs IS NULL
  AND i.indrelid IN (to_regclass('"ImageStorage"'), to_regclass('"CustomerStorage"'))
GROUP BY c.relname, ic.relname, i.indpred, i.indrelid
ORDER BY c.relname, ic.relname;

-- name: create_migrations_table
-- The record of the project's schema versions, made before anything else of the schema.
CREATE SCHEMA IF NOT EXISTS storage_calc;
CREATE TABLE IF NOT EXISTS storage_calc.migrations (
    version int PRIMARY KEY,
    name text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
);

-- name: schema_state
-- Whether the project's schema exists, and whether it records its versions (releases from
-- before schema versions made the schema without the record).
SELECT to_regnamespace('storage_calc') IS NOT NULL AS has_schema,
       to_regclass('storage_calc.migrations') IS NOT NULL AS has_versions;

-- name: applied_migrations
-- The versions of the project's schema applied to this database.
SELECT version FROM storage_calc.migrations ORDER BY version;

-- name: record_migration
-- Records a version of the project's schema as applied.
INSERT INTO storage_calc.migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: drop_views
-- Drops every view of the project's schema, so that views.sql can create them again with other
-- columns, and the migrations can change the tables under them.
DO $$
DECLARE
    view record;
BEGIN
    FOR view IN SELECT viewname FROM pg_views WHERE schemaname = 'storage_calc' LOOP
        EXECUTE 'DROP VIEW IF EXISTS storage_calc.' || quote_ident(view.viewname) || ' CASCADE';
    END LOOP;
END
$$;

-- name: seed_default_policy
-- The policy of new CustomerStorage rows, only where none exists: operators' policies are theirs.
INSERT INTO "StoragePolicies" ("Id", "MaximumNumberOfStoredImages", "MaximumTotalSizeOfStoredImages")
SELECT 'default', 1000000000, 1125899906842624
WHERE NOT EXISTS (SELECT 1 FROM "StoragePolicies" WHERE "Id" = 'default');

-- name: images_columns
-- The columns of the platform's "Images" table, which has had 4 to 31 of them.
SELECT attname FROM pg_attribute
WHERE attrelid = '"Images"'::regclass AND attnum > 0 AND NOT attisdropped;

-- name: registered
-- Which of the given ids are registered assets.
SELECT "Id" FROM "Images" WHERE "Id" = ANY (%(ids)s::text[]);

-- name: all_customers
-- Every customer that has registered assets or figures.
SELECT "Customer" FROM "Images"
UNION SELECT "Customer" FROM "ImageStorage"
UNION SELECT "Customer" FROM "CustomerStorage"
ORDER BY 1;

-- name: registry
-- The registered assets of a scope, with their spaces (from space 0, the stub space, where the
-- layout has one). A row whose Id does not start with its own customer and space is misfiled:
-- it counts nowhere (see misfiled).
SELECT "Id", "Space" FROM "Images"
WHERE "Customer" = %(customer)s
  AND "Space" >= %(first_space)s
  AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
  AND "Space" <> ALL (%(excluded)s::int[])
  AND (%(asset)s::text IS NULL OR "Id" = %(asset)s)
  AND starts_with("Id", "Customer" || '/' || "Space" || '/');

-- name: asset_counts
-- The registered assets of every customer and space, counted as registry reads them: the
-- weights that shards balance.
SELECT "Customer", "Space", count(*) FROM "Images"
WHERE "Space" >= %(first_space)s AND starts_with("Id", "Customer" || '/' || "Space" || '/')
GROUP BY "Customer", "Space";

-- name: misfiled
-- The "Images" rows filed under a scope whose Id names another customer or space: how many, and
-- the first few ids.
SELECT count(*) AS count,
       coalesce((array_agg("Id"::text ORDER BY "Id"))[1:5], ARRAY[]::text[]) AS examples
FROM "Images"
WHERE "Customer" = %(customer)s
  AND "Space" >= %(first_space)s
  AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
  AND "Space" <> ALL (%(excluded)s::int[])
  AND (%(asset)s::text IS NULL OR "Id" = %(asset)s)
  AND NOT starts_with("Id", "Customer" || '/' || "Space" || '/');

-- name: registry_sorted
-- The registered assets of a scope (as registry), sorted by space and then by id in UTF-8 byte
-- order, the order of S3 listings, whatever the database's collation: a customer is cut into
-- key ranges along it.
SELECT "Id", "Space" FROM "Images"
WHERE "Customer" = %(customer)s
  AND "Space" >= %(first_space)s
  AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
  AND "Space" <> ALL (%(excluded)s::int[])
  AND starts_with("Id", "Customer" || '/' || "Space" || '/')
ORDER BY "Space", "Id" COLLATE "C";

-- name: customer_lock_held
-- Whether the session `holder` holds the customer's advisory lock (try_lock_customer): a
-- customer is written on a connection of its own, while the run's session holds its lock.
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND database = (
            SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = %(namespace)s AND objid = %(customer)s AND objsubid = 2
      AND pid = %(holder)s AND granted
);

-- name: try_lock_customer
-- A session-level advisory lock in the project's own key space, one per customer.
SELECT pg_try_advisory_lock(%(namespace)s, %(customer)s);

-- name: try_lock_customer_shared
-- The same lock in shared mode: the shards of one run hold it together, each computing its own
-- spaces of the customer, while a run of the whole customer cannot take it.
SELECT pg_try_advisory_lock_shared(%(namespace)s, %(customer)s);

-- name: lock_customer_commit
-- Serialises the writes of one customer until the end of the transaction: shards that compute
-- different spaces of it refresh its customer-level row one after the other, each from every
-- space row as committed.
SELECT pg_advisory_xact_lock(%(namespace)s, %(customer)s);

-- name: unlock_customer
-- Releases the lock taken by try_lock_customer.
SELECT pg_advisory_unlock(%(namespace)s, %(customer)s);

-- name: unlock_customer_shared
-- Releases the lock taken by try_lock_customer_shared.
SELECT pg_advisory_unlock_shared(%(namespace)s, %(customer)s);

-- name: set_in_progress
-- Sets "CheckingInProgress" for the assets of a scope that have figures already.
UPDATE "ImageStorage" SET "CheckingInProgress" = %(in_progress)s
WHERE "Customer" = %(customer)s
  AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
  AND "Space" <> ALL (%(excluded)s::int[])
  AND (%(asset)s::text IS NULL OR "Id" = %(asset)s)
  AND "CheckingInProgress" IS DISTINCT FROM %(in_progress)s;

-- name: create_figures
-- The staging table of a connection: the per-asset figures of the customer it computes, copied
-- in slice by slice while the customer is listed, then written in the customer's transaction.
-- No key: the rows come from the registry's ids, unique already, every join with the table is
-- a hash join, and an index would be maintained for every copied row for nothing.
CREATE TEMP TABLE IF NOT EXISTS storage_calc_figures (
    "Id" varchar(500) NOT NULL,
    "Space" int NOT NULL,
    "Size" bigint NOT NULL,
    "ThumbnailSize" bigint NOT NULL,
    "AdjunctSize" bigint NOT NULL
);

-- name: clear_figures
-- Empties the staging table before and after a customer: the connection computes others next.
TRUNCATE storage_calc_figures;

-- name: copy_figures
-- Streams the per-asset figures into the staging table, in binary: no text to format here
-- and parse on the server.
COPY storage_calc_figures ("Id", "Space", "Size", "ThumbnailSize", "AdjunctSize")
FROM STDIN (FORMAT BINARY);

-- name: copy_figures_csv
-- Streams the per-asset figures of an inventory into the staging table, as DuckDB wrote them.
COPY storage_calc_figures ("Id", "Space", "Size", "ThumbnailSize", "AdjunctSize")
FROM STDIN (FORMAT csv);

-- name: write_settings
-- Planner settings for the rest of the write's transaction, whose statements join a customer's
-- rows, up to millions, with tables that the same transaction (or a recent one) has just filled.
-- enable_nestloop and enable_mergejoin off: before the statistics catch up (they say a customer
-- has no ImageStorage row until its first write is analyzed), the planner can choose a nested
-- loop that rereads one side for every row of the other, or a merge join on "Space" alone that
-- compares every row of a space with every registered asset of it, minutes where a hash join
-- takes a fraction of a second (benchmarks/README.md). A hash join stays linear whatever the
-- estimates.
-- work_mem 64MB: a hash join over a million rows stays in memory, in one batch (a hash table may
-- take work_mem times hash_mem_multiplier). Split into batches, the UPDATE meets the rows in the
-- order of the batches, not of the table, and once the table outgrows shared_buffers each page
-- is read and written back once per batch.
-- plan_cache_mode force_custom_plan: psycopg prepares a statement run five times on a
-- connection, and PostgreSQL may then plan it once for any customer. A plan made for a customer
-- of a few hundred rows hashes the eight million of the next one in a table sized for hundreds:
-- its delete_unregistered ran for minutes instead of seconds.
SELECT set_config('enable_nestloop', 'off', true), set_config('enable_mergejoin', 'off', true),
       set_config('work_mem', '64MB', true),
       set_config('plan_cache_mode', 'force_custom_plan', true);

-- name: analyze_figures
-- Gives the planner the staging table's real size: temporary tables are never analyzed by
-- autovacuum, and a guess of a few rows makes a million-row join a nested loop.
ANALYZE storage_calc_figures;

-- name: customer_rows
-- The CustomerStorage rows of a customer, locked until the end of the transaction.
SELECT "Customer" AS customer, "Space" AS space, "StoragePolicy" AS storage_policy,
       "NumberOfStoredImages" AS number_of_stored_images,
       "TotalSizeOfStoredImages" AS total_size_of_stored_images,
       "TotalSizeOfThumbnails" AS total_size_of_thumbnails,
       "NumberOfStoredAdjuncts" AS number_of_stored_adjuncts,  -- with: space_adjuncts
       "TotalSizeOfStoredAdjuncts" AS total_size_of_stored_adjuncts,  -- with: space_adjuncts
       "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s
ORDER BY "Space" NULLS FIRST
FOR UPDATE;

-- name: update_image_storage
-- Rewrites the figures of the staged assets that have a row already: a plain UPDATE, cheaper
-- than ON CONFLICT's speculative insertion for the rows every rerun rewrites.
UPDATE "ImageStorage" s SET
    "ThumbnailSize" = f."ThumbnailSize",
    "Size" = f."Size",
    "AdjunctSize" = f."AdjunctSize",  -- with: asset_adjuncts
    "LastChecked" = %(checked)s,
    "CheckingInProgress" = false
FROM storage_calc_figures f
WHERE s."Customer" = %(customer)s AND s."Id" = f."Id" AND s."Space" = f."Space";

-- name: insert_image_storage
-- Inserts the staged assets that have no row yet. A plain INSERT, run in a savepoint: if ingest
-- inserts one of these rows meanwhile, the unique violation sends the write to
-- upsert_image_storage instead. Rows of assets unregistered since the listing started are
-- removed afterwards by delete_unregistered. In "Id" order, so that the key's index fills page by
-- page instead of dirtying pages at random (a first write of millions of assets takes about a
-- third of the time so; benchmarks/README.md).
INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size",
                            "AdjunctSize",  -- with: asset_adjuncts
                            "LastChecked", "CheckingInProgress")
SELECT f."Id", %(customer)s, f."Space", f."ThumbnailSize", f."Size",
       f."AdjunctSize",  -- with: asset_adjuncts
       %(checked)s, false
FROM storage_calc_figures f
WHERE NOT EXISTS (
    SELECT 1 FROM "ImageStorage" s
    WHERE s."Customer" = %(customer)s AND s."Id" = f."Id" AND s."Space" = f."Space"
)
ORDER BY f."Id";

-- name: upsert_image_storage
-- Writes the staged figures of the assets that are still registered, whatever rows exist.
INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size",
                            "AdjunctSize",  -- with: asset_adjuncts
                            "LastChecked", "CheckingInProgress")
SELECT f."Id", i."Customer", i."Space", f."ThumbnailSize", f."Size",
       f."AdjunctSize",  -- with: asset_adjuncts
       %(checked)s, false
FROM storage_calc_figures f
JOIN "Images" i ON i."Id" = f."Id" AND i."Customer" = %(customer)s AND i."Space" = f."Space"
ON CONFLICT ("Id", "Customer", "Space") DO UPDATE SET
    "ThumbnailSize" = excluded."ThumbnailSize",
    "Size" = excluded."Size",
    "AdjunctSize" = excluded."AdjunctSize",  -- with: asset_adjuncts
    "LastChecked" = excluded."LastChecked",
    "CheckingInProgress" = false;

-- name: delete_unregistered
-- Deletes the ImageStorage rows of a scope whose asset is no longer registered, or registered
-- misfiled, so that no figure stays in a total that no run can refresh.
DELETE FROM "ImageStorage" s
WHERE s."Customer" = %(customer)s
  AND (%(only)s::int[] IS NULL OR s."Space" = ANY (%(only)s::int[]))
  AND s."Space" <> ALL (%(excluded)s::int[])
  AND (%(asset)s::text IS NULL OR s."Id" = %(asset)s)
  AND NOT EXISTS (
      SELECT 1 FROM "Images" i
      WHERE i."Id" = s."Id" AND i."Customer" = %(customer)s AND i."Space" = s."Space"
        AND starts_with(i."Id", i."Customer" || '/' || i."Space" || '/')
  );

-- name: upsert_space_rows
-- Recomputes the space rows of a scope from ImageStorage (and the hosted adjuncts of their
-- assets, where the layout counts them); a space left empty is zeroed. The figures are summed
-- in one pass over the scope's rows, before the join with the spaces. The conflict target names
-- the current layout's partial unique index; the seed layout's primary key satisfies it too.
WITH figures AS (
    SELECT "Space", count(*) AS images, sum("Size") AS size,
           sum("AdjunctSize") AS adjunct_size,  -- with: space_adjuncts
           sum("ThumbnailSize") AS thumbnails
    FROM "ImageStorage"
    WHERE "Customer" = %(customer)s AND "Space" >= %(first_space)s
      AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
      AND "Space" <> ALL (%(excluded)s::int[])
    GROUP BY "Space"
), adjuncts AS (  -- with: space_adjuncts
    SELECT i."Space", count(*) AS adjuncts  -- with: space_adjuncts
    FROM "Adjuncts" a JOIN "Images" i ON i."Id" = a."AssetId"  -- with: space_adjuncts
    WHERE i."Customer" = %(customer)s AND i."Space" >= %(first_space)s  -- with: space_adjuncts
      AND (%(only)s::int[] IS NULL OR i."Space" = ANY (%(only)s::int[]))  -- with: space_adjuncts
      AND i."Space" <> ALL (%(excluded)s::int[])  -- with: space_adjuncts
      AND a."Origin" <> ''  -- with: space_adjuncts
    GROUP BY i."Space"  -- with: space_adjuncts
), spaces AS (
    SELECT "Space" FROM figures
    UNION
    SELECT "Space" FROM "CustomerStorage"
    WHERE "Customer" = %(customer)s AND "Space" >= %(first_space)s
      AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
      AND "Space" <> ALL (%(excluded)s::int[])
)
INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy", "NumberOfStoredImages",
                               "TotalSizeOfStoredImages", "TotalSizeOfThumbnails",
                               "NumberOfStoredAdjuncts", "TotalSizeOfStoredAdjuncts",  -- with: space_adjuncts
                               "LastCalculated")
SELECT %(customer)s, sp."Space", 'default', coalesce(f.images, 0), coalesce(f.size, 0),
       coalesce(f.thumbnails, 0),
       coalesce(a.adjuncts, 0), coalesce(f.adjunct_size, 0),  -- with: space_adjuncts
       now()
FROM spaces sp
LEFT JOIN figures f ON f."Space" = sp."Space"
LEFT JOIN adjuncts a ON a."Space" = sp."Space"  -- with: space_adjuncts
ON CONFLICT ("Customer", "Space") WHERE "Space" IS NOT NULL DO UPDATE SET
    "StoragePolicy" = coalesce("CustomerStorage"."StoragePolicy", excluded."StoragePolicy"),
    "NumberOfStoredImages" = excluded."NumberOfStoredImages",
    "TotalSizeOfStoredImages" = excluded."TotalSizeOfStoredImages",
    "TotalSizeOfThumbnails" = excluded."TotalSizeOfThumbnails",
    "NumberOfStoredAdjuncts" = excluded."NumberOfStoredAdjuncts",  -- with: space_adjuncts
    "TotalSizeOfStoredAdjuncts" = excluded."TotalSizeOfStoredAdjuncts",  -- with: space_adjuncts
    "LastCalculated" = excluded."LastCalculated";

-- name: upsert_customer_row
-- Recomputes the customer-level row (space 0, or NULL in the current layout) as the sum of its
-- space rows, if it has any rows. Its conflict target is the layout's key of that row.
INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy", "NumberOfStoredImages",
                               "TotalSizeOfStoredImages", "TotalSizeOfThumbnails",
                               "NumberOfStoredAdjuncts", "TotalSizeOfStoredAdjuncts",  -- with: space_adjuncts
                               "LastCalculated")
SELECT %(customer)s, %(customer_space)s::int, 'default', coalesce(sum("NumberOfStoredImages"), 0),
       coalesce(sum("TotalSizeOfStoredImages"), 0), coalesce(sum("TotalSizeOfThumbnails"), 0),
       coalesce(sum("NumberOfStoredAdjuncts"), 0),  -- with: space_adjuncts
       coalesce(sum("TotalSizeOfStoredAdjuncts"), 0),  -- with: space_adjuncts
       now()
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s AND "Space" >= %(first_space)s
HAVING count(*) > 0 OR EXISTS (
    SELECT 1 FROM "CustomerStorage"
    WHERE "Customer" = %(customer)s AND "Space" IS NOT DISTINCT FROM %(customer_space)s::int
)
ON CONFLICT ("Customer", "Space") DO UPDATE SET  -- without: customer_row_at_null
ON CONFLICT ("Customer") WHERE "Space" IS NULL DO UPDATE SET  -- with: customer_row_at_null
    "StoragePolicy" = coalesce("CustomerStorage"."StoragePolicy", excluded."StoragePolicy"),
    "NumberOfStoredImages" = excluded."NumberOfStoredImages",
    "TotalSizeOfStoredImages" = excluded."TotalSizeOfStoredImages",
    "TotalSizeOfThumbnails" = excluded."TotalSizeOfThumbnails",
    "NumberOfStoredAdjuncts" = excluded."NumberOfStoredAdjuncts",  -- with: space_adjuncts
    "TotalSizeOfStoredAdjuncts" = excluded."TotalSizeOfStoredAdjuncts",  -- with: space_adjuncts
    "LastCalculated" = excluded."LastCalculated";

-- name: insert_run
-- Records the start of a run.
INSERT INTO storage_calc.runs (started, scope, shard) VALUES (%(started)s, %(scope)s, %(shard)s)
RETURNING id;

-- name: lock_run
-- Held by the run's session for as long as the run goes on, and released with the session, so
-- that a process that dies leaves a run nobody holds.
SELECT pg_advisory_lock(%(namespace)s, %(run_id)s::int);

-- name: close_abandoned_runs
-- Closes the runs still 'running' whose lock nobody holds: their process died (killed, out of
-- memory, node lost) before it could record how they ended.
UPDATE storage_calc.runs r
SET outcome = 'abandoned', error = 'the process running it ended before recording its outcome'
WHERE r.outcome = 'running'
  AND NOT EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = %(namespace)s::int::oid AND l.objid = r.id::int::oid
  );

-- name: finish_run
-- Records how a run ended.
UPDATE storage_calc.runs SET
    finished = now(), outcome = %(outcome)s, objects = %(objects)s, bytes = %(bytes)s,
    assets = %(assets)s, orphans = %(orphans)s, orphan_bytes = %(orphan_bytes)s,
    unattributed = %(unattributed)s, unattributed_bytes = %(unattributed_bytes)s,
    customers = %(customers)s, customers_failed = %(customers_failed)s,
    customers_skipped = %(customers_skipped)s, drift_bytes = %(drift_bytes)s, error = %(error)s,
    misfiled = %(misfiled)s, uncounted = %(uncounted)s
WHERE id = %(run_id)s;

-- name: insert_customer_run
-- Records the outcome of one customer of a run, and returns a row unless it was recorded
-- already: by an attempt whose commit went through but whose answer the connection lost.
INSERT INTO storage_calc.customer_runs (run_id, customer, space, asset, outcome, objects, bytes,
                                        assets, orphans, orphan_bytes, unattributed, seconds, error,
                                        misfiled, misfiled_examples)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(asset)s, %(outcome)s, %(objects)s, %(bytes)s,
        %(assets)s, %(orphans)s, %(orphan_bytes)s, %(unattributed)s, %(seconds)s, %(error)s,
        %(misfiled)s, %(misfiled_examples)s)
ON CONFLICT (run_id, customer) DO NOTHING
RETURNING run_id;

-- name: prune_runs
-- Deletes old runs; their changes, orphans and customer results go with them (ON DELETE CASCADE).
DELETE FROM storage_calc.runs WHERE started < %(before)s;

-- name: insert_change
-- Records a CustomerStorage row a run changed, with its figures before and after; the
-- customer-level row has a NULL space, whatever the layout.
INSERT INTO storage_calc.changes (run_id, customer, space, images_before, images_after,
                                  size_before, size_after, thumbnails_before, thumbnails_after,
                                  adjuncts_before, adjuncts_after, adjunct_size_before,
                                  adjunct_size_after)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(images_before)s, %(images_after)s,
        %(size_before)s, %(size_after)s, %(thumbnails_before)s, %(thumbnails_after)s,
        %(adjuncts_before)s, %(adjuncts_after)s, %(adjunct_size_before)s, %(adjunct_size_after)s);

-- name: insert_orphans
-- Records the orphans a run found in one space.
INSERT INTO storage_calc.orphans (run_id, customer, space, objects, bytes, assets, examples)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(objects)s, %(bytes)s, %(assets)s, %(examples)s);

-- name: customer_storage
-- One CustomerStorage row; a NULL %(space)s is the current layout's customer-level row.
SELECT "Customer" AS customer, "Space" AS space, "StoragePolicy" AS storage_policy,
       "NumberOfStoredImages" AS number_of_stored_images,
       "TotalSizeOfStoredImages" AS total_size_of_stored_images,
       "TotalSizeOfThumbnails" AS total_size_of_thumbnails,
       "NumberOfStoredAdjuncts" AS number_of_stored_adjuncts,  -- with: space_adjuncts
       "TotalSizeOfStoredAdjuncts" AS total_size_of_stored_adjuncts,  -- with: space_adjuncts
       "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s AND "Space" IS NOT DISTINCT FROM %(space)s::int;

-- name: image_storage
-- One ImageStorage row.
SELECT "Id" AS id, "Customer" AS customer, "Space" AS space, "ThumbnailSize" AS thumbnail_size,
       "Size" AS size,
       "AdjunctSize" AS adjunct_size,  -- with: asset_adjuncts
       "LastChecked" AS last_checked, "CheckingInProgress" AS checking_in_progress
FROM "ImageStorage"
WHERE "Id" = %(id)s AND "Customer" = %(customer)s AND "Space" = %(space)s;

-- name: storage_policy
-- One StoragePolicies row.
SELECT "Id" AS id, "MaximumNumberOfStoredImages" AS maximum_number_of_stored_images,
       "MaximumTotalSizeOfStoredImages" AS maximum_total_size_of_stored_images
FROM "StoragePolicies"
WHERE "Id" = %(id)s;

-- name: recent_runs
-- The latest runs, newest first.
SELECT id, started, finished, extract(epoch FROM finished - started)::float8 AS seconds, scope,
       shard, outcome, customers, customers_failed, customers_skipped, objects, bytes, assets,
       orphans, orphan_bytes, unattributed, uncounted, drift_bytes, misfiled, error
FROM storage_calc.runs
ORDER BY id DESC
LIMIT %(limit)s;

-- name: customer_usage
-- Customers by bytes stored (images and thumbnails), with their policy limits.
SELECT customer, storage_policy, images, max_images, images_percent, size_bytes, max_size_bytes,
       size_percent, thumbnails_bytes, last_calculated
FROM storage_calc.customer_usage
WHERE %(customer)s::int IS NULL OR customer = %(customer)s
ORDER BY size_bytes + thumbnails_bytes DESC, customer
LIMIT %(limit)s;

-- name: space_usage
-- Spaces by bytes stored.
SELECT rank, customer, space, images, size_bytes, thumbnails_bytes, total_bytes, last_calculated
FROM storage_calc.largest_spaces
WHERE %(customer)s::int IS NULL OR customer = %(customer)s
ORDER BY rank, customer, space
LIMIT %(limit)s;

-- name: drift_since
-- The CustomerStorage rows changed by runs started since a time: figures before the first change
-- and after the last, and the bytes the runs corrected (the sum of the absolute changes each run
-- made). Customer-level rows (a NULL space) only, unless one customer is asked for.
SELECT c.customer, c.space, count(*) AS runs,
       (array_agg(c.images_before ORDER BY c.run_id))[1] AS images_before,
       (array_agg(c.images_after ORDER BY c.run_id DESC))[1] AS images_after,
       (array_agg(c.size_before ORDER BY c.run_id))[1] AS size_before,
       (array_agg(c.size_after ORDER BY c.run_id DESC))[1] AS size_after,
       (array_agg(c.thumbnails_before ORDER BY c.run_id))[1] AS thumbnails_before,
       (array_agg(c.thumbnails_after ORDER BY c.run_id DESC))[1] AS thumbnails_after,
       sum(abs(c.size_after - c.size_before) + abs(c.thumbnails_after - c.thumbnails_before))
           AS corrected_bytes,
       max(r.finished) AS last_changed
FROM storage_calc.changes c
JOIN storage_calc.runs r ON r.id = c.run_id
WHERE r.started >= %(since)s
  AND (%(customer)s::int IS NULL AND c.space IS NULL OR c.customer = %(customer)s)
GROUP BY c.customer, c.space
ORDER BY abs((array_agg(c.size_after ORDER BY c.run_id DESC))[1]
             - (array_agg(c.size_before ORDER BY c.run_id))[1]) DESC, c.customer,
         c.space NULLS FIRST;

-- name: customer_orphans
-- Customers whose latest complete computation found orphans.
SELECT customer, run_id, found_at, spaces, objects, bytes, assets
FROM storage_calc.customer_orphans
WHERE objects > 0
ORDER BY bytes DESC, customer;

-- name: space_orphans
-- The orphans per space of a customer's latest complete computation, with example keys.
SELECT o.customer, o.space, o.objects, o.bytes, o.assets, o.examples
FROM storage_calc.orphans o
JOIN storage_calc.customer_orphans co ON co.run_id = o.run_id AND co.customer = o.customer
WHERE o.customer = %(customer)s
ORDER BY o.space;

-- name: misfiled_assets
-- Customers whose latest complete computation found misfiled "Images" rows, with example ids.
SELECT customer, run_id, found_at, misfiled, examples
FROM (
    SELECT DISTINCT ON (cr.customer) cr.customer, cr.run_id, r.finished AS found_at,
           cr.misfiled, cr.misfiled_examples AS examples
    FROM storage_calc.customer_runs cr
    JOIN storage_calc.runs r ON r.id = cr.run_id
    WHERE cr.outcome = 'done' AND cr.space IS NULL AND cr.asset IS NULL
      AND (%(customer)s::int IS NULL OR cr.customer = %(customer)s)
    ORDER BY cr.customer, cr.run_id DESC
) latest
WHERE misfiled > 0
ORDER BY misfiled DESC, customer;

-- name: quota
-- Customers using at least margin percent of a limit of their policy, compared in numeric.
SELECT customer, storage_policy,
       CASE WHEN images > max_images OR size_bytes > max_size_bytes THEN 'over' ELSE 'near' END
           AS status,
       images, max_images, images_percent, size_bytes, max_size_bytes, size_percent
FROM storage_calc.customer_usage
WHERE (images * 100::numeric >= max_images * %(margin)s::numeric
       OR size_bytes * 100::numeric >= max_size_bytes * %(margin)s::numeric)
  AND (%(customers)s::int[] IS NULL OR customer = ANY (%(customers)s::int[]))
ORDER BY greatest(images_percent, size_percent) DESC, customer;

-- name: delete_billable
-- Removes a customer's billable rows of the spaces computed (%(only)s but not %(excluded)s), and
-- its row outside any space when %(whole)s, the whole customer, is computed.
DELETE FROM storage_calc.billable_storage
WHERE customer = %(customer)s
  AND CASE WHEN space IS NULL THEN %(whole)s
           ELSE (%(only)s::int[] IS NULL OR space = ANY (%(only)s::int[]))
                AND space <> ALL (%(excluded)s::int[]) END;

-- name: insert_billable
-- One billable row of a customer's space (or of its keys outside any space).
INSERT INTO storage_calc.billable_storage (
    customer, space, current_objects, current_bytes, billed_bytes, noncurrent_versions,
    noncurrent_bytes, delete_markers, incomplete_uploads, incomplete_upload_bytes, oldest_upload,
    by_storage_class, last_checked
) VALUES (
    %(customer)s, %(space)s, %(current_objects)s, %(current_bytes)s, %(billed_bytes)s,
    %(noncurrent_versions)s, %(noncurrent_bytes)s, %(delete_markers)s, %(incomplete_uploads)s,
    %(incomplete_upload_bytes)s, %(oldest_upload)s, %(by_storage_class)s, %(checked)s
);

-- name: billable_report
-- The billable rows of one customer (or of all) with when they were listed and written.
SELECT customer, space, current_objects, current_bytes, billed_bytes, noncurrent_versions,
       noncurrent_bytes, delete_markers, incomplete_uploads, incomplete_upload_bytes,
       oldest_upload, by_storage_class, last_checked, last_calculated
FROM storage_calc.billable_storage
WHERE %(customer)s::int IS NULL OR customer = %(customer)s
ORDER BY customer, space NULLS FIRST;
