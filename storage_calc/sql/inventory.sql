-- DuckDB statements of storage_calc.inventory_sums, by name. Values are bound ($name), except in
-- the statements over every object (located_objects, partition_objects, sum_partition,
-- add_assets, locate_versions), which read theirs as variables (getvariable('name')): bound as
-- parameters, the same partition write took about twice as long (benchmarks/README.md). In
-- partition_objects, `{located}` is the UNION ALL of one located_objects per location, whose `{i}`
-- is the location's number, `{bit}` its bit in a group's `locations`, `{objects}` the
-- relation of its data files (`relation` in inventory_sums), `{rel}` and `{adjunct}` the
-- expressions of its relative key and adjunct test; in add_assets, `{examples}` is one URL per
-- location, NULL where the owner has no key there.

-- name: create_macros
-- owner: the id (`c/s/asset`) of the asset that would own a key relative to its location's
-- prefix, as storage_calc.keys.owner_id reads it but for the int4 range and space 0, which are
-- checked per owner; '' when none. above: the customer prefix (`c/`) or space prefix (`c/s/`)
-- of a key no asset owns, '' outside every customer. in_scope: whether a space (NULL: outside
-- any space) is in the spaces a run computes, as model.Spaces.includes reads them.
CREATE MACRO owner(rel) AS CASE WHEN contains(rel, chr(0)) THEN '' ELSE
    regexp_extract(rel, '^((?:0|[1-9][0-9]{0,9})/(?:0|[1-9][0-9]{0,9})/[^/]+)', 1) END;
CREATE MACRO above(rel) AS
    regexp_extract(rel, '^((?:0|[1-9][0-9]{0,9})/(?:(?:0|[1-9][0-9]{0,9})/)?)', 1);
CREATE MACRO in_scope(space, only_spaces, excluded) AS
    CASE WHEN only_spaces IS NULL THEN space IS NULL OR NOT list_contains(excluded, space)
         ELSE list_contains(only_spaces, space) END;
CREATE MACRO int4(t) AS
    CASE WHEN try_cast(t AS bigint) <= 2147483647 THEN try_cast(t AS integer) END;

-- name: located_objects
-- One location's current versions under its prefix, each with its group: its owner, or `/`
-- and the prefix above it for a key no asset owns, or chr(1) for a malformed row (kept
-- whatever its version or key, to be named). `rel` is the key relative to the location's
-- prefix, `adjunct` whether an owned key is an adjunct (false where adjuncts are artefacts).
SELECT {bit} AS location, size,
       CASE WHEN bad THEN chr(1) WHEN owned <> '' THEN owned ELSE '/' || above(rel) END AS g,
       {adjunct} AS adjunct
FROM (
    SELECT rel, size, bad, CASE WHEN bad THEN '' ELSE owner(rel) END AS owned
    FROM (
        SELECT {rel} AS rel, size, bad
        FROM ({objects})
        WHERE bad
           OR (is_latest AND NOT is_delete_marker AND starts_with(key, getvariable('prefix_{i}')))
    )
)

-- name: partition_objects
-- Every location's objects in one parallel scan, written to `$path` in as many partitions by
-- group as the variable `partitions` says (Parquet files `p=N/`), so that each partition is
-- summed in memory.
-- Summing ten million groups at once would take gigabytes, or spill its hash tables.
COPY (
    SELECT hash(g) % getvariable('partitions') AS p, g, size, location, adjunct
    FROM ({located})
) TO $path (FORMAT parquet, PARTITION_BY (p), COMPRESSION uncompressed);

-- name: create_sums
-- assets: every owner in the int4 range (and in space 0 only with a stub space) with its
-- figures and, as its example, the first of its s3:// URLs (`s3://bucket/prefix/ID`) in the
-- locations holding its keys. others: the objects no asset owns per customer (NULL: outside
-- every customer prefix) and space (NULL: not under any `c/s/`).
CREATE TABLE assets (
    customer integer NOT NULL,
    space integer NOT NULL,
    id varchar NOT NULL,
    objects bigint NOT NULL,
    bytes hugeint NOT NULL,
    size hugeint NOT NULL,
    thumbs hugeint NOT NULL,
    adjuncts hugeint NOT NULL,
    example varchar NOT NULL
);
CREATE TABLE others (customer integer, space integer, objects bigint, bytes hugeint);

-- name: sum_partition
-- One partition's objects summed per group, with the locations that hold the group's keys
-- (one bit each), and whether the group names an asset.
CREATE OR REPLACE TEMP TABLE part AS
SELECT *, customer IS NOT NULL AND space IS NOT NULL
          AND (space <> 0 OR getvariable('stub_space')) AS owned
FROM (
    SELECT g, count(*) AS objects, coalesce(sum(size), 0) AS bytes,
           coalesce(sum(size) FILTER (location & getvariable('thumbnails') = 0 AND NOT adjunct),
                    0) AS size,
           coalesce(sum(size) FILTER (location & getvariable('thumbnails') <> 0), 0) AS thumbs,
           coalesce(sum(size) FILTER (adjunct), 0) AS adjuncts,
           bit_or(location) AS locations,
           CASE WHEN g NOT IN ('', chr(1)) AND NOT starts_with(g, '/')
                THEN int4(split_part(g, '/', 1)) END AS customer,
           CASE WHEN g NOT IN ('', chr(1)) AND NOT starts_with(g, '/')
                THEN int4(split_part(g, '/', 2)) END AS space
    FROM read_parquet($files)
    GROUP BY g
);

-- name: bad_rows
SELECT coalesce(sum(objects), 0) FROM part WHERE g = chr(1);

-- name: bad_row
-- The first malformed row of a location's data files, to name in an error: read again only
-- when there is one.
SELECT file, bucket, key, size_text, is_latest_text, is_delete_marker_text
FROM ({objects}) WHERE bad LIMIT 1;

-- name: add_assets
INSERT INTO assets
SELECT customer, space, g, objects, bytes, size, thumbs, adjuncts, least({examples})
FROM part WHERE owned;

-- name: add_others
-- The groups of keys above an asset, and the owners that add_assets leaves out.
INSERT INTO others
SELECT int4(split_part(p, '/', 1)) AS customer,
       CASE WHEN p LIKE '%/%/%' THEN int4(split_part(p, '/', 2)) END AS space,
       sum(objects), sum(bytes)
FROM (
    SELECT CASE WHEN starts_with(g, '/') THEN substr(g, 2)
                ELSE split_part(g, '/', 1) || '/' || split_part(g, '/', 2) || '/' END AS p,
           objects, bytes
    FROM part
    WHERE NOT owned AND g <> chr(1)
)
GROUP BY ALL;

-- name: order_assets
-- By customer, so that reading one customer skips the row groups of the others.
CREATE OR REPLACE TABLE assets AS SELECT * FROM assets ORDER BY customer, space;

-- name: customers
SELECT customer FROM assets UNION SELECT customer FROM others WHERE customer IS NOT NULL;

-- name: outside
SELECT coalesce(sum(objects), 0), coalesce(sum(bytes), 0) FROM others WHERE customer IS NULL;

-- name: load_registry
-- A customer's registered assets, as PostgreSQL's COPY wrote them (CSV: id, space).
CREATE OR REPLACE TEMP TABLE registry AS
SELECT * FROM read_csv($path, header = false, auto_detect = false, delim = ',', quote = '"',
                       escape = '"', columns = {'id': 'varchar', 'space': 'integer'});

-- name: stage_assets
-- The figures of every registered asset of the scope, 0 for those without objects, as the
-- staging table of PostgreSQL reads them (CSV: id, space, size, thumbnails, adjuncts).
COPY (
    SELECT r.id, r.space, coalesce(a.size, 0), coalesce(a.thumbs, 0), coalesce(a.adjuncts, 0)
    FROM registry r
    LEFT JOIN (SELECT * FROM assets WHERE customer = $customer) a USING (id)
) TO $path (FORMAT csv, HEADER false);

-- name: scope_totals
-- The objects and bytes of a scope, and those of them that no asset owns.
SELECT coalesce(sum(objects), 0), coalesce(sum(bytes), 0),
       coalesce(sum(objects) FILTER (unattributed), 0),
       coalesce(sum(bytes) FILTER (unattributed), 0)
FROM (
    SELECT space, objects, bytes, id, false AS unattributed FROM assets
    WHERE customer = $customer
    UNION ALL
    SELECT space, objects, bytes, NULL, true FROM others
    WHERE customer = $customer AND $asset IS NULL
)
WHERE ($asset IS NULL OR id = $asset) AND in_scope(space, $only, $excluded);

-- name: scope_orphans
-- The scope's owners that are not registered, per space: objects, bytes, how many, and the
-- first few of their examples.
SELECT space, sum(objects), sum(bytes), count(*), (list(example ORDER BY example))[1:$examples]
FROM assets a
WHERE customer = $customer
  AND ($asset IS NULL OR id = $asset)
  AND in_scope(space, $only, $excluded)
  AND NOT EXISTS (SELECT 1 FROM registry r WHERE r.id = a.id)
GROUP BY space
ORDER BY space;

-- name: create_billable
-- billable_sums: every version and delete marker summed per (customer, space) candidate,
-- storage class and kind, for the billable figures (storage_calc.billable); billing_classes:
-- the minimum billed size and the archive overhead of the classes that have one.
CREATE TABLE billable_sums (
    p varchar NOT NULL,
    storage_class varchar NOT NULL,
    is_latest boolean NOT NULL,
    is_delete_marker boolean NOT NULL,
    versions bigint NOT NULL,
    bytes hugeint NOT NULL,
    billed hugeint NOT NULL
);
CREATE TABLE billing_classes (
    storage_class varchar NOT NULL,
    minimum bigint NOT NULL,
    overhead bigint NOT NULL
);

-- name: locate_versions
-- Sums every version and delete marker of one location's objects under its prefix per
-- customer or space prefix (storage_calc.keys.scope_of), billed as billable.billed_size bills
-- them (a delete marker at 0 bytes).
INSERT INTO billable_sums
SELECT above(rel) AS p, storage_class, is_latest, is_delete_marker, count(*),
       coalesce(sum(size), 0),
       coalesce(sum(CASE WHEN is_delete_marker THEN 0
                         ELSE greatest(size, coalesce(minimum, 0)) + coalesce(overhead, 0) END), 0)
FROM (
    SELECT substr(key, length(getvariable('prefix_{i}')) + 1) AS rel, size, is_latest,
           is_delete_marker, coalesce(nullif(storage_class, ''), 'STANDARD') AS storage_class
    FROM ({objects})
    WHERE NOT bad AND starts_with(key, getvariable('prefix_{i}'))
)
LEFT JOIN billing_classes USING (storage_class)
GROUP BY ALL;

-- name: customer_versions
-- A customer's versions and delete markers per space (NULL: under the customer's prefix but
-- in no space), storage class and kind.
SELECT CASE WHEN p LIKE '%/%/%' THEN int4(split_part(p, '/', 2)) END AS space,
       storage_class, is_latest, is_delete_marker, sum(versions), sum(bytes), sum(billed)
FROM billable_sums
WHERE p <> '' AND int4(split_part(p, '/', 1)) = $customer
GROUP BY ALL;
