-- DuckDB statements of storage_calc.inventory_sums, by name. Values are bound ($name); the
-- relation `objects` of locate_objects is one location's data files, read as their format
-- asks (inventory_sums.OBJECTS), and `{objects}` is replaced by it.

-- name: create_tables
-- located_sums: the objects of every location summed per owner candidate: the first three
-- segments of each key (relative to its location's prefix), as text, and how deep the key goes
-- (0: no `/`; 1: under `{c}/` only; 2: under `{c}/{s}/`). Whether they name an asset is decided
-- per group, not per object.
CREATE TABLE located_sums (
    location integer NOT NULL,
    c varchar NOT NULL,
    s varchar NOT NULL,
    a varchar NOT NULL,
    depth tinyint NOT NULL,
    objects bigint NOT NULL,
    bytes hugeint NOT NULL,
    adjunct_bytes hugeint NOT NULL,
    first_rest varchar NOT NULL,
    bad boolean NOT NULL
);
CREATE TABLE locations (
    location integer NOT NULL,
    bucket varchar NOT NULL,
    prefix varchar NOT NULL,
    thumbnails boolean NOT NULL
);
CREATE MACRO canonical(t) AS
    regexp_full_match(t, '0|[1-9][0-9]{0,9}') AND try_cast(t AS bigint) <= 2147483647;

-- name: create_billable
-- billable_sums: every version and delete marker of a location summed per (customer, space)
-- candidate, storage class and kind, for the billable figures (storage_calc.billable);
-- billing_classes: the minimum billed size and the archive overhead of the classes that have one.
CREATE TABLE billable_sums (
    c varchar NOT NULL,
    s varchar NOT NULL,
    depth tinyint NOT NULL,
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
-- Sums every version and delete marker of one location's objects under its prefix, billed as
-- storage_calc.billable.billed_size bills them (a delete marker at 0 bytes).
INSERT INTO billable_sums
SELECT c, s, depth, storage_class, is_latest, is_delete_marker, count(*),
       coalesce(sum(size), 0),
       coalesce(sum(CASE WHEN is_delete_marker THEN 0
                         ELSE greatest(size, coalesce(minimum, 0)) + coalesce(overhead, 0) END), 0)
FROM (
    SELECT size, is_latest, is_delete_marker, storage_class, c, s,
           CASE WHEN length(rel) > length(c) + length(s) + 1 THEN 2
                WHEN length(rel) > length(c) THEN 1 ELSE 0 END AS depth
    FROM (
        SELECT size, is_latest, is_delete_marker, rel,
               coalesce(nullif(storage_class, ''), 'STANDARD') AS storage_class,
               split_part(rel, '/', 1) AS c, split_part(rel, '/', 2) AS s
        FROM (
            SELECT substr(key, length($prefix) + 1) AS rel, size, is_latest, is_delete_marker,
                   storage_class
            FROM ({objects})
            WHERE NOT bad AND starts_with(key, $prefix)
        )
    )
)
LEFT JOIN billing_classes USING (storage_class)
GROUP BY ALL;

-- name: customer_versions
-- A customer's versions and delete markers per space (NULL: under the customer's prefix but
-- in no space), storage class and kind.
SELECT CASE WHEN depth = 2 AND canonical(s) THEN CAST(s AS integer) END AS space,
       storage_class, is_latest, is_delete_marker, sum(versions), sum(bytes), sum(billed)
FROM billable_sums
WHERE depth >= 1 AND c = CAST($customer AS varchar)
GROUP BY ALL;

-- name: locate_objects
-- Sums the current versions of one location's objects under its prefix per owner candidate,
-- in one scan that also keeps the malformed rows apart (`bad`), whatever their version or key.
-- A key holding a NUL character is unattributable, as in storage_calc.keys.
INSERT INTO located_sums
SELECT $location, c, s, a, depth, count(*), coalesce(sum(size), 0),
       coalesce(sum(size) FILTER (adjunct), 0), min(rest), bad
FROM (
    SELECT size, bad, c, s, a,
           CASE WHEN length(rel) > length(c) + length(s) + 1 THEN 2
                WHEN length(rel) > length(c) THEN 1 ELSE 0 END AS depth,
           $split_adjuncts AND a <> ''
               AND starts_with(substr(rel, length(c) + length(s) + length(a) + 4), 'adjuncts/')
               AS adjunct,
           substr(rel, length(c) + length(s) + length(a) + 3) AS rest
    FROM (
        SELECT size, bad, rel, split_part(rel, '/', 1) AS c, split_part(rel, '/', 2) AS s,
               CASE WHEN contains(rel, chr(0)) THEN '' ELSE split_part(rel, '/', 3) END AS a
        FROM (
            SELECT coalesce(substr(key, length($prefix) + 1), '') AS rel, size, bad
            FROM ({objects})
            WHERE bad OR (is_latest AND NOT is_delete_marker AND starts_with(key, $prefix))
        )
    )
)
GROUP BY ALL;

-- name: located
-- The malformed rows and the objects summed of a location.
SELECT coalesce(sum(objects) FILTER (bad), 0), coalesce(sum(objects) FILTER (NOT bad), 0)
FROM located_sums WHERE location = $location;

-- name: bad_row
-- The first malformed row of a location's data files, to name in an error: read again only
-- when there is one.
SELECT file, bucket, key, size_text, is_latest_text, is_delete_marker_text
FROM ({objects}) WHERE bad LIMIT 1;

-- name: create_assets
-- Every attributable owner (storage_calc.keys.owner_id) with its figures over all locations,
-- and the first of its keys as an s3:// URL. Ordered by customer, so that reading one
-- customer skips the others' row groups.
CREATE TABLE assets AS
SELECT customer, space, id, sum(objects) AS objects, sum(bytes) AS bytes,
       sum(artefact_bytes) AS size, sum(thumbnail_bytes) AS thumbs,
       sum(adjunct_bytes) AS adjuncts, min(example) AS example
FROM (
    SELECT CAST(c AS integer) AS customer, CAST(s AS integer) AS space,
           c || '/' || s || '/' || a AS id, objects, bytes,
           CASE WHEN thumbnails THEN 0 ELSE bytes - adjunct_bytes END AS artefact_bytes,
           CASE WHEN thumbnails THEN bytes ELSE 0 END AS thumbnail_bytes,
           adjunct_bytes,
           's3://' || bucket || '/' || prefix || c || '/' || s || '/' || a || first_rest
               AS example
    FROM located_sums JOIN locations USING (location)
    WHERE NOT bad AND a <> '' AND canonical(c) AND canonical(s) AND (s <> '0' OR $stub_space)
)
GROUP BY customer, space, id
ORDER BY customer, space;

-- name: create_others
-- The unattributable objects per customer (NULL: outside every customer prefix) and space
-- (NULL: not under any `{c}/{s}/`).
CREATE TABLE others AS
SELECT CASE WHEN depth >= 1 AND canonical(c) THEN CAST(c AS integer) END AS customer,
       CASE WHEN depth = 2 AND canonical(c) AND canonical(s) THEN CAST(s AS integer) END
           AS space,
       sum(objects) AS objects, sum(bytes) AS bytes
FROM located_sums
WHERE NOT bad AND NOT (a <> '' AND canonical(c) AND canonical(s) AND (s <> '0' OR $stub_space))
GROUP BY ALL;

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
-- The objects and bytes of a scope, and those of them that are unattributable.
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
WHERE ($asset IS NULL OR id = $asset)
  AND (CASE WHEN $only IS NULL THEN space IS NULL OR NOT list_contains($excluded, space)
            ELSE list_contains($only, space) END);

-- name: scope_orphans
-- The scope's attributable owners that are not registered, per space: objects, bytes, how
-- many, and the first keys of the first few.
SELECT space, sum(objects), sum(bytes), count(*), (list(example ORDER BY example))[1:$examples]
FROM assets a
WHERE customer = $customer
  AND ($asset IS NULL OR id = $asset)
  AND (CASE WHEN $only IS NULL THEN NOT list_contains($excluded, space)
            ELSE list_contains($only, space) END)
  AND NOT EXISTS (SELECT 1 FROM registry r WHERE r.id = a.id)
GROUP BY space
ORDER BY space;
