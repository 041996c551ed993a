-- The schema `storage-calc db migrate` creates. Idempotent: it only creates what is missing and
-- never drops or rewrites data.

-- The platform's asset registry: read only. Created, minimal, only where the platform has none.
DO $$
BEGIN
    IF to_regclass('"Images"') IS NULL THEN
        CREATE TABLE "Images" (
            "Id" varchar(500) PRIMARY KEY,
            "Customer" int NOT NULL,
            "Space" int NOT NULL,
            "Created" timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX "IX_Images_Customer_Space" ON "Images" ("Customer", "Space");
    END IF;
END
$$;

-- Every run rewrites every row of a customer twice: CheckingInProgress on, then the figures.
-- Neither touches an indexed column, so with half of each page left free the new version goes
-- on the same page as a heap-only tuple: no index entry, and the space of the version before
-- is pruned on the next visit. At the default fillfactor of 100 almost every rewrite adds an
-- entry to both indexes, and the table and its indexes grow until vacuum catches up.
CREATE TABLE IF NOT EXISTS "ImageStorage" (
    "Id" varchar(500) NOT NULL,
    "Customer" int NOT NULL,
    "Space" int NOT NULL,
    "ThumbnailSize" bigint NOT NULL DEFAULT 0,
    "Size" bigint NOT NULL DEFAULT 0,
    "LastChecked" timestamptz,
    "CheckingInProgress" boolean NOT NULL DEFAULT false,
    PRIMARY KEY ("Id", "Customer", "Space")
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS "IX_ImageStorage_Customer_Space" ON "ImageStorage" ("Customer", "Space");

CREATE TABLE IF NOT EXISTS "CustomerStorage" (
    "Customer" int NOT NULL,
    "Space" int NOT NULL,
    "StoragePolicy" varchar(500),
    "NumberOfStoredImages" bigint NOT NULL DEFAULT 0,
    "TotalSizeOfStoredImages" bigint NOT NULL DEFAULT 0,
    "TotalSizeOfThumbnails" bigint NOT NULL DEFAULT 0,
    "LastCalculated" timestamptz,
    PRIMARY KEY ("Customer", "Space")
);

CREATE TABLE IF NOT EXISTS "StoragePolicies" (
    "Id" varchar(500) PRIMARY KEY,
    "MaximumNumberOfStoredImages" bigint NOT NULL,
    "MaximumTotalSizeOfStoredImages" bigint NOT NULL
);

INSERT INTO "StoragePolicies" ("Id", "MaximumNumberOfStoredImages", "MaximumTotalSizeOfStoredImages")
VALUES ('default', 1000000000, 1125899906842624)
ON CONFLICT ("Id") DO NOTHING;

-- The project's own bookkeeping, never in the platform's tables.
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
    error text,
    orphan_bytes bigint NOT NULL DEFAULT 0,
    unattributed_bytes bigint NOT NULL DEFAULT 0,
    customers int NOT NULL DEFAULT 0,
    customers_failed int NOT NULL DEFAULT 0,
    customers_skipped int NOT NULL DEFAULT 0,
    drift_bytes bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON storage_calc.runs (started);

-- One row per customer a run took on: its outcome, figures and time.
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

-- Views for dashboards and reports; docs/views.md describes them column by column.

CREATE OR REPLACE VIEW storage_calc.customer_usage AS
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
WHERE cs."Space" = 0;

CREATE OR REPLACE VIEW storage_calc.largest_spaces AS
SELECT rank() OVER (ORDER BY "TotalSizeOfStoredImages" + "TotalSizeOfThumbnails" DESC) AS rank,
       "Customer" AS customer,
       "Space" AS space,
       "NumberOfStoredImages" AS images,
       "TotalSizeOfStoredImages" AS size_bytes,
       "TotalSizeOfThumbnails" AS thumbnails_bytes,
       "TotalSizeOfStoredImages" + "TotalSizeOfThumbnails" AS total_bytes,
       "LastCalculated" AS last_calculated
FROM "CustomerStorage"
WHERE "Space" > 0;

CREATE OR REPLACE VIEW storage_calc.run_drift AS
SELECT r.id AS run_id,
       r.started,
       r.scope,
       r.shard,
       r.outcome,
       count(c.customer) FILTER (WHERE c.space = 0) AS customers_changed,
       count(c.customer) FILTER (WHERE c.space > 0) AS spaces_changed,
       coalesce(sum(c.images_after - c.images_before) FILTER (WHERE c.space = 0), 0) AS images_net,
       coalesce(sum(c.size_after - c.size_before) FILTER (WHERE c.space = 0), 0) AS size_net_bytes,
       coalesce(sum(abs(c.size_after - c.size_before)) FILTER (WHERE c.space = 0), 0)
           AS size_drift_bytes,
       coalesce(sum(c.thumbnails_after - c.thumbnails_before) FILTER (WHERE c.space = 0), 0)
           AS thumbnails_net_bytes,
       coalesce(sum(abs(c.thumbnails_after - c.thumbnails_before)) FILTER (WHERE c.space = 0), 0)
           AS thumbnails_drift_bytes
FROM storage_calc.runs r
LEFT JOIN storage_calc.changes c ON c.run_id = r.id
GROUP BY r.id;

CREATE OR REPLACE VIEW storage_calc.runs_per_day AS
SELECT (started AT TIME ZONE 'UTC')::date AS day,
       outcome,
       count(*) AS runs,
       sum(objects) AS objects,
       sum(bytes) AS bytes,
       round(avg(extract(epoch FROM finished - started)), 3) AS mean_seconds,
       round(max(extract(epoch FROM finished - started)), 3) AS max_seconds
FROM storage_calc.runs
GROUP BY 1, 2;

CREATE OR REPLACE VIEW storage_calc.customer_orphans AS
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
