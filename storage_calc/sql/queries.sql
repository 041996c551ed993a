-- Named queries used by storage_calc.db. Each block starts with "-- name: <name>", then a
-- comment line saying what it does, then the SQL. Values are always bound as %(name)s.
-- A NULL %(space)s or %(asset)s means "every space" or "every asset" of the customer.

-- name: server_now
-- The database clock: every timestamp the job writes comes from it, never from the host.
SELECT now();

-- name: all_customers
-- Every customer that has registered assets or figures.
SELECT "Customer" FROM "Images"
UNION SELECT "Customer" FROM "ImageStorage"
UNION SELECT "Customer" FROM "CustomerStorage"
ORDER BY 1;

-- name: registry
-- The registered assets of a scope, with their spaces (space 0 never holds assets).
SELECT "Id", "Space" FROM "Images"
WHERE "Customer" = %(customer)s
  AND "Space" > 0
  AND (%(space)s::int IS NULL OR "Space" = %(space)s)
  AND (%(asset)s::text IS NULL OR "Id" = %(asset)s);

-- name: try_lock_customer
-- A session-level advisory lock in the project's own key space, one per customer.
SELECT pg_try_advisory_lock(%(namespace)s, %(customer)s);

-- name: unlock_customer
-- Releases the lock taken by try_lock_customer.
SELECT pg_advisory_unlock(%(namespace)s, %(customer)s);

-- name: set_in_progress
-- Sets "CheckingInProgress" for the assets of a scope that have figures already.
UPDATE "ImageStorage" SET "CheckingInProgress" = %(in_progress)s
WHERE "Customer" = %(customer)s
  AND (%(space)s::int IS NULL OR "Space" = %(space)s)
  AND (%(asset)s::text IS NULL OR "Id" = %(asset)s)
  AND "CheckingInProgress" IS DISTINCT FROM %(in_progress)s;

-- name: create_figures
-- A staging table for one customer's per-asset figures, gone at the end of the transaction.
-- No key: the rows come from the registry's ids, unique already, every join with the table is
-- a hash join, and an index would be maintained for every copied row for nothing.
CREATE TEMP TABLE storage_calc_figures (
    "Id" varchar(500) NOT NULL,
    "Space" int NOT NULL,
    "Size" bigint NOT NULL,
    "ThumbnailSize" bigint NOT NULL
) ON COMMIT DROP;

-- name: copy_figures
-- Streams the per-asset figures into the staging table, in binary: no text to format here
-- and parse on the server.
COPY storage_calc_figures ("Id", "Space", "Size", "ThumbnailSize") FROM STDIN (FORMAT BINARY);

-- name: write_settings
-- Planner settings for the rest of the write's transaction, whose statements join a customer's
-- rows, up to millions, with tables that the same transaction (or a recent one) has just filled.
-- enable_nestloop off: before the statistics catch up, the planner can choose a nested loop
-- that rereads one side for every row of the other; hash and merge joins stay linear whatever
-- the estimates.
-- work_mem 64MB: a hash join over a million rows stays in memory, in one batch (a hash table may
-- take work_mem times hash_mem_multiplier). Split into batches, the UPDATE meets the rows in the
-- order of the batches, not of the table, and once the table outgrows shared_buffers each page
-- is read and written back once per batch: 6.0 s instead of 3.5 s for a million rows.
SELECT set_config('enable_nestloop', 'off', true), set_config('work_mem', '64MB', true);

-- name: analyze_figures
-- Gives the planner the staging table's real size: temporary tables are never analyzed by
-- autovacuum, and a guess of a few rows makes a million-row join a nested loop.
ANALYZE storage_calc_figures;

-- name: customer_rows
-- The CustomerStorage rows of a customer, locked until the end of the transaction.
SELECT "Customer" AS customer, "Space" AS space, "StoragePolicy" AS storage_policy,
       "NumberOfStoredImages" AS number_of_stored_images,
       "TotalSizeOfStoredImages" AS total_size_of_stored_images,
       "TotalSizeOfThumbnails" AS total_size_of_thumbnails, "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s
ORDER BY "Space"
FOR UPDATE;

-- name: update_image_storage
-- Rewrites the figures of the staged assets that have a row already: a plain UPDATE, cheaper
-- than ON CONFLICT's speculative insertion for the rows every rerun rewrites.
UPDATE "ImageStorage" s SET
    "ThumbnailSize" = f."ThumbnailSize",
    "Size" = f."Size",
    "LastChecked" = %(checked)s,
    "CheckingInProgress" = false
FROM storage_calc_figures f
WHERE s."Customer" = %(customer)s AND s."Id" = f."Id" AND s."Space" = f."Space";

-- name: insert_image_storage
-- Inserts the staged assets that have no row yet. A plain INSERT, run in a savepoint: if ingest
-- inserts one of these rows meanwhile, the unique violation sends the write to
-- upsert_image_storage instead. Rows of assets unregistered since the listing started are
-- removed afterwards by delete_unregistered.
INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size", "LastChecked",
                            "CheckingInProgress")
SELECT f."Id", %(customer)s, f."Space", f."ThumbnailSize", f."Size", %(checked)s, false
FROM storage_calc_figures f
WHERE NOT EXISTS (
    SELECT 1 FROM "ImageStorage" s
    WHERE s."Customer" = %(customer)s AND s."Id" = f."Id" AND s."Space" = f."Space"
);

-- name: upsert_image_storage
-- Writes the staged figures of the assets that are still registered, whatever rows exist.
INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size", "LastChecked",
                            "CheckingInProgress")
SELECT f."Id", i."Customer", i."Space", f."ThumbnailSize", f."Size", %(checked)s, false
FROM storage_calc_figures f
JOIN "Images" i ON i."Id" = f."Id" AND i."Customer" = %(customer)s AND i."Space" = f."Space"
ON CONFLICT ("Id", "Customer", "Space") DO UPDATE SET
    "ThumbnailSize" = excluded."ThumbnailSize",
    "Size" = excluded."Size",
    "LastChecked" = excluded."LastChecked",
    "CheckingInProgress" = false;

-- name: delete_unregistered
-- Deletes the ImageStorage rows of a scope whose asset is no longer registered.
DELETE FROM "ImageStorage" s
WHERE s."Customer" = %(customer)s
  AND (%(space)s::int IS NULL OR s."Space" = %(space)s)
  AND (%(asset)s::text IS NULL OR s."Id" = %(asset)s)
  AND NOT EXISTS (
      SELECT 1 FROM "Images" i
      WHERE i."Id" = s."Id" AND i."Customer" = %(customer)s AND i."Space" = s."Space"
  );

-- name: upsert_space_rows
-- Recomputes the space rows of a scope from ImageStorage; a space left empty is zeroed. The
-- figures are summed in one pass over the scope's rows, before the join with the spaces.
WITH figures AS (
    SELECT "Space", count(*) AS images, sum("Size") AS size, sum("ThumbnailSize") AS thumbnails
    FROM "ImageStorage"
    WHERE "Customer" = %(customer)s AND "Space" > 0
      AND (%(space)s::int IS NULL OR "Space" = %(space)s)
    GROUP BY "Space"
), spaces AS (
    SELECT "Space" FROM figures
    UNION
    SELECT "Space" FROM "CustomerStorage"
    WHERE "Customer" = %(customer)s AND "Space" > 0
      AND (%(space)s::int IS NULL OR "Space" = %(space)s)
)
INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy", "NumberOfStoredImages",
                               "TotalSizeOfStoredImages", "TotalSizeOfThumbnails", "LastCalculated")
SELECT %(customer)s, sp."Space", 'default', coalesce(f.images, 0), coalesce(f.size, 0),
       coalesce(f.thumbnails, 0), now()
FROM spaces sp
LEFT JOIN figures f ON f."Space" = sp."Space"
ON CONFLICT ("Customer", "Space") DO UPDATE SET
    "StoragePolicy" = coalesce("CustomerStorage"."StoragePolicy", excluded."StoragePolicy"),
    "NumberOfStoredImages" = excluded."NumberOfStoredImages",
    "TotalSizeOfStoredImages" = excluded."TotalSizeOfStoredImages",
    "TotalSizeOfThumbnails" = excluded."TotalSizeOfThumbnails",
    "LastCalculated" = excluded."LastCalculated";

-- name: upsert_customer_row
-- Recomputes the customer row (space 0) as the sum of its space rows, if it has any rows.
INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy", "NumberOfStoredImages",
                               "TotalSizeOfStoredImages", "TotalSizeOfThumbnails", "LastCalculated")
SELECT %(customer)s, 0, 'default', coalesce(sum("NumberOfStoredImages"), 0),
       coalesce(sum("TotalSizeOfStoredImages"), 0), coalesce(sum("TotalSizeOfThumbnails"), 0), now()
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s AND "Space" > 0
HAVING count(*) > 0 OR EXISTS (
    SELECT 1 FROM "CustomerStorage" WHERE "Customer" = %(customer)s AND "Space" = 0
)
ON CONFLICT ("Customer", "Space") DO UPDATE SET
    "StoragePolicy" = coalesce("CustomerStorage"."StoragePolicy", excluded."StoragePolicy"),
    "NumberOfStoredImages" = excluded."NumberOfStoredImages",
    "TotalSizeOfStoredImages" = excluded."TotalSizeOfStoredImages",
    "TotalSizeOfThumbnails" = excluded."TotalSizeOfThumbnails",
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
    customers_skipped = %(customers_skipped)s, drift_bytes = %(drift_bytes)s, error = %(error)s
WHERE id = %(run_id)s;

-- name: insert_customer_run
-- Records the outcome of one customer of a run.
INSERT INTO storage_calc.customer_runs (run_id, customer, space, asset, outcome, objects, bytes,
                                        assets, orphans, orphan_bytes, unattributed, seconds, error)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(asset)s, %(outcome)s, %(objects)s, %(bytes)s,
        %(assets)s, %(orphans)s, %(orphan_bytes)s, %(unattributed)s, %(seconds)s, %(error)s);

-- name: prune_runs
-- Deletes old runs; their changes, orphans and customer results go with them (ON DELETE CASCADE).
DELETE FROM storage_calc.runs WHERE started < %(before)s;

-- name: insert_change
-- Records a CustomerStorage row a run changed, with its figures before and after.
INSERT INTO storage_calc.changes (run_id, customer, space, images_before, images_after,
                                  size_before, size_after, thumbnails_before, thumbnails_after)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(images_before)s, %(images_after)s,
        %(size_before)s, %(size_after)s, %(thumbnails_before)s, %(thumbnails_after)s);

-- name: insert_orphans
-- Records the orphans a run found in one space.
INSERT INTO storage_calc.orphans (run_id, customer, space, objects, bytes, assets, examples)
VALUES (%(run_id)s, %(customer)s, %(space)s, %(objects)s, %(bytes)s, %(assets)s, %(examples)s);

-- name: customer_storage
-- One CustomerStorage row.
SELECT "Customer" AS customer, "Space" AS space, "StoragePolicy" AS storage_policy,
       "NumberOfStoredImages" AS number_of_stored_images,
       "TotalSizeOfStoredImages" AS total_size_of_stored_images,
       "TotalSizeOfThumbnails" AS total_size_of_thumbnails, "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Customer" = %(customer)s AND "Space" = %(space)s;

-- name: image_storage
-- One ImageStorage row.
SELECT "Id" AS id, "Customer" AS customer, "Space" AS space, "ThumbnailSize" AS thumbnail_size,
       "Size" AS size, "LastChecked" AS last_checked, "CheckingInProgress" AS checking_in_progress
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
       orphans, orphan_bytes, unattributed, drift_bytes, error
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
-- made). Customer rows only, unless one customer is asked for.
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
  AND (%(customer)s::int IS NULL AND c.space = 0 OR c.customer = %(customer)s)
GROUP BY c.customer, c.space
ORDER BY abs((array_agg(c.size_after ORDER BY c.run_id DESC))[1]
             - (array_agg(c.size_before ORDER BY c.run_id))[1]) DESC, c.customer, c.space;

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
