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

CREATE TABLE IF NOT EXISTS "ImageStorage" (
    "Id" varchar(500) NOT NULL,
    "Customer" int NOT NULL,
    "Space" int NOT NULL,
    "ThumbnailSize" bigint NOT NULL DEFAULT 0,
    "Size" bigint NOT NULL DEFAULT 0,
    "LastChecked" timestamptz,
    "CheckingInProgress" boolean NOT NULL DEFAULT false,
    PRIMARY KEY ("Id", "Customer", "Space")
) WITH (fillfactor = 70);  -- every run rewrites every row: room on the page keeps updates HOT
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
