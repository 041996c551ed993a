-- Views for dashboards and reports; docs/views.md describes them column by column. `db migrate`
-- drops every view of the schema and creates these again, so a view can change its columns.

-- The "Space" of the customer-level rows of "CustomerStorage", read from the catalog at every
-- call, so the views follow the platform's layout when its own migrations change it: 0 where
-- "Space" is NOT NULL (the seed layout), NULL where it is nullable (the current layout, where
-- space 0 is the stub space).
CREATE OR REPLACE FUNCTION storage_calc.customer_row_space() RETURNS int
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN attnotnull THEN 0 END
    FROM pg_attribute
    WHERE attrelid = to_regclass('"CustomerStorage"') AND attname = 'Space'
$$;

CREATE VIEW storage_calc.customer_usage AS
SELECT cs."Customer" AS customer,
       coalesce(cs."StoragePolicy", 'default') AS storage_policy,
       cs."NumberOfStoredImages" AS images,
       p."MaximumNumberOfStoredImages" AS max_images,
       round(100.0 * cs."NumberOfStoredImages"
             / nullif(p."MaximumNumberOfStoredImages", 0), 2) AS images_percent,
       cs."TotalSizeOfStoredImages" AS size_bytes,
       p."MaximumTotalSizeOfStoredImages" AS max_size_bytes,
       round(100.0 * cs."TotalSizeOfStoredImages"
             / nullif(p."MaximumTotalSizeOfStoredImages", 0), 2) AS size_percent,
       cs."TotalSizeOfThumbnails" AS thumbnails_bytes,
       cs."LastCalculated" AS last_calculated
FROM "CustomerStorage" cs
LEFT JOIN "StoragePolicies" p ON p."Id" = coalesce(cs."StoragePolicy", 'default')
WHERE cs."Space" IS NOT DISTINCT FROM storage_calc.customer_row_space();

CREATE VIEW storage_calc.largest_spaces AS
SELECT rank() OVER (ORDER BY "TotalSizeOfStoredImages" + "TotalSizeOfThumbnails" DESC) AS rank,
       "Customer" AS customer,
       "Space" AS space,
       "NumberOfStoredImages" AS images,
       "TotalSizeOfStoredImages" AS size_bytes,
       "TotalSizeOfThumbnails" AS thumbnails_bytes,
       "TotalSizeOfStoredImages" + "TotalSizeOfThumbnails" AS total_bytes,
       "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Space" IS DISTINCT FROM storage_calc.customer_row_space();

-- In the history the customer-level row is always a NULL space, whatever the layout.
CREATE VIEW storage_calc.run_drift AS
SELECT r.id AS run_id,
       r.started,
       r.scope,
       r.shard,
       r.outcome,
       count(c.customer) FILTER (WHERE c.space IS NULL) AS customers_changed,
       count(c.customer) FILTER (WHERE c.space IS NOT NULL) AS spaces_changed,
       coalesce(sum(c.images_after - c.images_before) FILTER (WHERE c.space IS NULL), 0)
           AS images_net,
       coalesce(sum(c.size_after - c.size_before) FILTER (WHERE c.space IS NULL), 0)
           AS size_net_bytes,
       coalesce(sum(abs(c.size_after - c.size_before)) FILTER (WHERE c.space IS NULL), 0)
           AS size_drift_bytes,
       coalesce(sum(c.thumbnails_after - c.thumbnails_before) FILTER (WHERE c.space IS NULL), 0)
           AS thumbnails_net_bytes,
       coalesce(sum(abs(c.thumbnails_after - c.thumbnails_before)) FILTER (WHERE c.space IS NULL),
                0) AS thumbnails_drift_bytes
FROM storage_calc.runs r
LEFT JOIN storage_calc.changes c ON c.run_id = r.id
GROUP BY r.id;

CREATE VIEW storage_calc.runs_per_day AS
SELECT (started AT TIME ZONE 'UTC')::date AS day,
       outcome,
       count(*) AS runs,
       sum(objects) AS objects,
       sum(bytes) AS bytes,
       round(avg(extract(epoch FROM finished - started)), 3) AS mean_seconds,
       round(max(extract(epoch FROM finished - started)), 3) AS max_seconds
FROM storage_calc.runs
GROUP BY 1, 2;

CREATE VIEW storage_calc.customer_orphans AS
WITH latest AS (
    SELECT DISTINCT ON (cr.customer) cr.customer, cr.run_id, r.finished
    FROM storage_calc.customer_runs cr
    JOIN storage_calc.runs r ON r.id = cr.run_id
    WHERE cr.outcome = 'done' AND cr.space IS NULL AND cr.asset IS NULL
    ORDER BY cr.customer, cr.run_id DESC
)
SELECT l.customer,
       l.run_id,
       l.finished AS found_at,
       count(o.space) AS spaces,
       coalesce(sum(o.objects), 0) AS objects,
       coalesce(sum(o.bytes), 0) AS bytes,
       coalesce(sum(o.assets), 0) AS assets
FROM latest l
LEFT JOIN storage_calc.orphans o ON o.run_id = l.run_id AND o.customer = l.customer
GROUP BY l.customer, l.run_id, l.finished;

-- GB-months per customer and calendar month (UTC) from the figures over time, as `report
-- billing --month` computes them: each hour charged the figures in force at its start, the open
-- month up to the last whole hour of the database clock, divided by the hours of the month and
-- by 2^30. Hours are counted since the epoch, so that the session's time zone changes nothing.
CREATE VIEW storage_calc.monthly_gb_months AS
WITH steps AS (
    SELECT s.customer,
           f.artefact_bytes + f.thumbnail_bytes + coalesce(f.adjunct_bytes, 0) AS stored_bytes,
           f.billed_bytes,
           ceil(extract(epoch FROM f.valid_from) / 3600)::bigint AS since,
           coalesce(lead(ceil(extract(epoch FROM f.valid_from) / 3600)::bigint)
                        OVER (PARTITION BY f.space_id ORDER BY f.valid_from),
                    floor(extract(epoch FROM now()) / 3600)::bigint) AS until
    FROM storage_calc.space_figures f
    JOIN storage_calc.figure_spaces s ON s.id = f.space_id
), parts AS (
    SELECT st.customer, st.stored_bytes, st.billed_bytes, m.month,
           least(st.until, m.upto) - greatest(st.since, m.since) AS hours, m.upto - m.since AS month_hours
    FROM steps st
    CROSS JOIN LATERAL (
        SELECT g.month, extract(epoch FROM g.month)::bigint / 3600 AS since,
               extract(epoch FROM g.month + interval '1 month')::bigint / 3600 AS upto
        FROM generate_series(
            date_trunc('month', to_timestamp(st.since * 3600) AT TIME ZONE 'UTC'),
            to_timestamp((st.until - 1) * 3600) AT TIME ZONE 'UTC',
            interval '1 month'
        ) AS g(month)
    ) m
    WHERE st.until > st.since
)
SELECT month AT TIME ZONE 'UTC' AS month,
       customer,
       sum(stored_bytes::numeric * hours) AS stored_byte_hours,
       round(sum(stored_bytes::numeric * hours) / (max(month_hours) * 1073741824::numeric), 6)
           AS stored_gb_months,
       sum(billed_bytes::numeric * hours) AS billed_byte_hours,
       round(sum(billed_bytes::numeric * hours) / (max(month_hours) * 1073741824::numeric), 6)
           AS billed_gb_months
FROM parts
WHERE hours > 0
GROUP BY month, customer;
