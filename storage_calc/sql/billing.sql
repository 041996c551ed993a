-- Named queries of figures over time (migration 0007) and of `report billing`, read with those
-- of queries.sql and in the same format. The spaces of a customer a commit covers are
-- %(only)s (NULL: every space) but not %(excluded)s; its NULL space (billable keys outside any
-- space) only when %(whole)s, the whole customer, is computed.

-- name: insert_figure_commit
-- Records a commit of a customer's figures, at the database clock once the customer's commit
-- lock is held: later than every commit of the customer's spaces before it.
INSERT INTO storage_calc.figure_commits (customer, committed_at, run_id, only_spaces,
                                         excluded_spaces)
VALUES (%(customer)s, clock_timestamp(), %(run_id)s, %(only)s::int[],
        nullif(%(excluded)s::int[], ARRAY[]::int[]))
RETURNING id, committed_at;

-- name: insert_figure_spaces
-- Numbers the spaces of the scope that have figures now and no number yet: the space rows of
-- "CustomerStorage" and, in a billable run, the billable rows. NOT EXISTS rather than ON
-- CONFLICT, which would draw an id from the sequence for every space of every night.
INSERT INTO storage_calc.figure_spaces (customer, space)
SELECT DISTINCT %(customer)s::int, present.space
FROM (
    SELECT "Space" AS space FROM "CustomerStorage"
    WHERE "Customer" = %(customer)s AND "Space" >= %(first_space)s
      AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
      AND "Space" <> ALL (%(excluded)s::int[])
    UNION ALL
    SELECT space FROM storage_calc.billable_storage
    WHERE %(billable)s AND customer = %(customer)s
      AND CASE WHEN space IS NULL THEN %(whole)s
               ELSE (%(only)s::int[] IS NULL OR space = ANY (%(only)s::int[]))
                    AND space <> ALL (%(excluded)s::int[]) END
) present
WHERE NOT EXISTS (
    SELECT 1 FROM storage_calc.figure_spaces s
    WHERE s.customer = %(customer)s AND coalesce(s.space, -1) = coalesce(present.space, -1)
);

-- name: step_space_figures
-- Gives every space of the scope whose figures differ from its latest step (or that has none)
-- a step at the commit. The platform's figures come from its "CustomerStorage" row (zeros once
-- the row is gone). A billable run measures the billable figures (zeros where the space has no
-- billable row any more); any other run carries them over from the latest step.
WITH platform AS (
    SELECT "Space" AS space, "NumberOfStoredImages" AS images,
           "TotalSizeOfStoredImages" AS artefact_bytes,
           "TotalSizeOfThumbnails" AS thumbnail_bytes,
           "TotalSizeOfStoredAdjuncts" AS adjunct_bytes  -- with: space_adjuncts
           NULL::bigint AS adjunct_bytes  -- without: space_adjuncts
    FROM "CustomerStorage"
    WHERE "Customer" = %(customer)s AND "Space" >= %(first_space)s
      AND (%(only)s::int[] IS NULL OR "Space" = ANY (%(only)s::int[]))
      AND "Space" <> ALL (%(excluded)s::int[])
), billable AS (
    SELECT space, current_bytes, by_storage_class, noncurrent_bytes, incomplete_upload_bytes,
           billed_bytes
    FROM storage_calc.billable_storage
    WHERE %(billable)s AND customer = %(customer)s
), spaces AS (
    SELECT id, space FROM storage_calc.figure_spaces
    WHERE customer = %(customer)s
      AND CASE WHEN space IS NULL THEN %(whole)s
               ELSE (%(only)s::int[] IS NULL OR space = ANY (%(only)s::int[]))
                    AND space <> ALL (%(excluded)s::int[]) END
), now_figures AS (
    SELECT sp.id AS space_id,
           coalesce(p.images, 0) AS images,
           coalesce(p.artefact_bytes, 0) AS artefact_bytes,
           coalesce(p.thumbnail_bytes, 0) AS thumbnail_bytes,
           coalesce(p.adjunct_bytes, 0) AS adjunct_bytes,  -- with: space_adjuncts
           NULL::bigint AS adjunct_bytes,  -- without: space_adjuncts
           CASE WHEN %(billable)s THEN coalesce(b.current_bytes, 0) ELSE l.current_bytes END
               AS current_bytes,
           CASE WHEN %(billable)s THEN coalesce(b.by_storage_class, jsonb_build_object()) ELSE l.by_storage_class END
               AS by_storage_class,
           CASE WHEN %(billable)s THEN coalesce(b.noncurrent_bytes, 0) ELSE l.noncurrent_bytes END
               AS noncurrent_bytes,
           CASE WHEN %(billable)s THEN coalesce(b.incomplete_upload_bytes, 0)
                ELSE l.incomplete_upload_bytes END AS incomplete_upload_bytes,
           CASE WHEN %(billable)s THEN coalesce(b.billed_bytes, 0) ELSE l.billed_bytes END
               AS billed_bytes,
           l.valid_from IS NULL AS first, l.images AS old_images,
           l.artefact_bytes AS old_artefact_bytes, l.thumbnail_bytes AS old_thumbnail_bytes,
           l.adjunct_bytes AS old_adjunct_bytes, l.current_bytes AS old_current_bytes,
           l.by_storage_class AS old_by_storage_class, l.noncurrent_bytes AS old_noncurrent_bytes,
           l.incomplete_upload_bytes AS old_incomplete_upload_bytes,
           l.billed_bytes AS old_billed_bytes
    FROM spaces sp
    LEFT JOIN platform p ON p.space = sp.space
    LEFT JOIN billable b ON coalesce(b.space, -1) = coalesce(sp.space, -1)
    LEFT JOIN LATERAL (
        SELECT * FROM storage_calc.space_figures f
        WHERE f.space_id = sp.id ORDER BY f.valid_from DESC LIMIT 1
    ) l ON true
)
INSERT INTO storage_calc.space_figures (
    space_id, valid_from, commit_id, images, artefact_bytes, thumbnail_bytes, adjunct_bytes,
    current_bytes, by_storage_class, noncurrent_bytes, incomplete_upload_bytes, billed_bytes
)
SELECT space_id, %(committed_at)s, %(commit_id)s, images, artefact_bytes, thumbnail_bytes,
       adjunct_bytes, current_bytes, by_storage_class, noncurrent_bytes,
       incomplete_upload_bytes, billed_bytes
FROM now_figures n
WHERE n.first
   OR ROW(n.images, n.artefact_bytes, n.thumbnail_bytes, n.adjunct_bytes, n.current_bytes,
          n.by_storage_class, n.noncurrent_bytes, n.incomplete_upload_bytes, n.billed_bytes)
      IS DISTINCT FROM
      ROW(n.old_images, n.old_artefact_bytes, n.old_thumbnail_bytes, n.old_adjunct_bytes,
          n.old_current_bytes, n.old_by_storage_class, n.old_noncurrent_bytes,
          n.old_incomplete_upload_bytes, n.old_billed_bytes);

-- name: billing_steps
-- The steps a billing period from %(start)s to %(end)s needs, of one customer or of all: per
-- space, the step in force at the start (carried into the period) and those within it. One
-- probe of the primary key per space for the first, one range scan for the others.
SELECT s.customer, s.space, f.valid_from, f.images, f.artefact_bytes, f.thumbnail_bytes,
       f.adjunct_bytes, f.current_bytes, f.by_storage_class, f.noncurrent_bytes,
       f.incomplete_upload_bytes, f.billed_bytes
FROM storage_calc.figure_spaces s
CROSS JOIN LATERAL (
    (SELECT * FROM storage_calc.space_figures c
     WHERE c.space_id = s.id AND c.valid_from <= %(start)s
     ORDER BY c.valid_from DESC LIMIT 1)
    UNION ALL
    (SELECT * FROM storage_calc.space_figures w
     WHERE w.space_id = s.id AND w.valid_from > %(start)s AND w.valid_from < %(end)s)
) f
WHERE %(customer)s::int IS NULL OR s.customer = %(customer)s;

-- name: billing_commits
-- The commits of figures within a billing period, of one customer or of all.
SELECT customer, committed_at, only_spaces, excluded_spaces
FROM storage_calc.figure_commits
WHERE committed_at >= %(start)s AND committed_at < %(end)s
  AND (%(customer)s::int IS NULL OR customer = %(customer)s);

-- name: repeatable_read
-- The first statement of a transaction whose reads must all see one snapshot.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: report_settings
-- work_mem 64MB for the rest of the transaction: the sorts of a month of every customer's
-- steps (hundreds of thousands of rows) stay in memory instead of spilling to disk.
SELECT set_config('work_mem', '64MB', true);

-- name: prune_steps
-- Deletes the steps from before %(before)s that a later step from before it replaces: the latest
-- of each space stays, in force at %(before)s, for the periods that start then or later.
DELETE FROM storage_calc.space_figures f
WHERE f.valid_from < %(before)s
  AND EXISTS (
      SELECT 1 FROM storage_calc.space_figures g
      WHERE g.space_id = f.space_id AND g.valid_from > f.valid_from
        AND g.valid_from <= %(before)s
  );

-- name: prune_commits
-- Deletes the commits from before %(before)s but those of the steps kept.
DELETE FROM storage_calc.figure_commits c
WHERE c.committed_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM storage_calc.space_figures f WHERE f.commit_id = c.id);

-- name: steps_kept
-- The steps from before %(before)s left after pruning, and the spaces they hold figures of.
SELECT count(*), count(DISTINCT space_id)
FROM storage_calc.space_figures WHERE valid_from < %(before)s;

-- name: billing_totals
-- The byte-hours of every customer (or one) over a billing period, summed here rather than
-- step by step in Python: what `storage_calc.billing.bill` computes, for thousands of customers
-- at once. Times are hours since the epoch: a step counts from %(start_h)s or its first whole
-- hour, until its space's next step does or %(end_h)s (the period's end, or the last whole hour
-- of the database clock); the period's months are the hours %(month_from)s to %(month_to)s. The
-- storage classes of the current bytes are summed only where %(classes)s (their JSON costs as
-- much as every other figure together). `stored` is the sum of three figures, added up by the
-- caller. One row per customer and month with figures (one with a NULL month for a customer
-- without any), by customer and month. The
-- step in force at the start is one probe of the primary key per space; those within the
-- period come from the BRIN index on valid_from, in one scan of the period's pages.
WITH steps AS (
    SELECT s.customer, f.space_id, f.valid_from, f.images, f.artefact_bytes, f.thumbnail_bytes,
           coalesce(f.adjunct_bytes, 0) AS adjunct_bytes, f.current_bytes, f.by_storage_class,
           f.noncurrent_bytes, f.incomplete_upload_bytes, f.billed_bytes,
           ceil(extract(epoch FROM f.valid_from) / 3600)::bigint AS hour
    FROM storage_calc.figure_spaces s
    CROSS JOIN LATERAL (
        SELECT * FROM storage_calc.space_figures c
        WHERE c.space_id = s.id AND c.valid_from <= %(start)s
        ORDER BY c.valid_from DESC LIMIT 1
    ) f
    WHERE %(customer)s::int IS NULL OR s.customer = %(customer)s
    UNION ALL
    SELECT s.customer, f.space_id, f.valid_from, f.images, f.artefact_bytes, f.thumbnail_bytes,
           coalesce(f.adjunct_bytes, 0), f.current_bytes, f.by_storage_class,
           f.noncurrent_bytes, f.incomplete_upload_bytes, f.billed_bytes,
           ceil(extract(epoch FROM f.valid_from) / 3600)::bigint
    FROM storage_calc.space_figures f
    JOIN storage_calc.figure_spaces s ON s.id = f.space_id
    WHERE f.valid_from > %(start)s AND f.valid_from < %(end)s
      AND (%(customer)s::int IS NULL OR s.customer = %(customer)s)
), segments AS (
    SELECT st.*, greatest(st.hour, %(start_h)s) AS since,
           least(coalesce(lead(st.hour) OVER (PARTITION BY st.space_id ORDER BY st.valid_from),
                          %(end_h)s), %(end_h)s) AS until
    FROM steps st
), parts AS NOT MATERIALIZED (
    SELECT sg.*, m.month, (least(sg.until, m.upto) - greatest(sg.since, m.since))::numeric AS hours
    FROM segments sg
    JOIN unnest(%(month_from)s::bigint[], %(month_to)s::bigint[]) WITH ORDINALITY
         AS m(since, upto, month)
      ON m.since < sg.until AND m.upto > sg.since
    WHERE sg.until > sg.since
), months AS (
    SELECT customer, month::int AS month,
           sum(images * hours) AS images, sum(artefact_bytes * hours) AS artefacts,
           sum(thumbnail_bytes * hours) AS thumbnails, sum(adjunct_bytes * hours) AS adjuncts,
           sum(current_bytes * hours) AS current, sum(noncurrent_bytes * hours) AS noncurrent,
           sum(incomplete_upload_bytes * hours) AS incomplete_uploads,
           sum(billed_bytes * hours) AS billed
    FROM parts GROUP BY customer, month
), classes AS (
    SELECT customer, month::int AS month, jsonb_object_agg(name, byte_hours) AS classes
    FROM (
        -- jsonb_each_text in the select list, not in a lateral join: a set-returning function
        -- there is evaluated per row without materializing each call's result.
        SELECT customer, month, (c).key AS name, sum((c).value::numeric * hours) AS byte_hours
        FROM (
            SELECT p.customer, p.month, p.hours, jsonb_each_text(p.by_storage_class) AS c
            FROM parts p
            WHERE %(classes)s AND p.by_storage_class IS NOT NULL
        ) pairs
        GROUP BY customer, month, (c).key
    ) by_class
    GROUP BY customer, month
), coverage AS (
    SELECT customer, min(greatest(valid_from, %(start)s)) AS seen_from,
           to_timestamp(min(since) FILTER (WHERE until > since) * 3600) AS covered_from,
           min(valid_from) FILTER (WHERE until > since) AS first_figure,
           max(valid_from) FILTER (WHERE until > since) AS last_figure
    FROM segments GROUP BY customer
)
SELECT c.customer, c.seen_from, c.covered_from, c.first_figure, c.last_figure, m.month,
       m.images, m.artefacts, m.thumbnails, m.adjuncts, m.current, m.noncurrent,
       m.incomplete_uploads, m.billed, cl.classes
FROM coverage c
LEFT JOIN months m ON m.customer = c.customer
LEFT JOIN classes cl ON cl.customer = m.customer AND cl.month = m.month
ORDER BY c.customer, m.month;

-- name: billing_gaps
-- Per customer of %(customers)s, seen from %(seen)s on: its commits from %(start)s up to
-- %(end)s, and the longest time between two of the moments made of when it was first seen,
-- its commits since then and %(end)s (the earliest, of equal ones).
WITH customers AS (
    SELECT * FROM unnest(%(customers)s::int[], %(seen)s::timestamptz[]) AS c(customer, seen)
    WHERE c.seen < %(end)s
), commits AS (
    SELECT k.customer, k.committed_at
    FROM storage_calc.figure_commits k
    WHERE k.committed_at >= %(start)s AND k.committed_at < %(end)s
      AND (%(one)s::int IS NULL OR k.customer = %(one)s)
), counted AS (
    SELECT customer, count(*) AS commits FROM commits GROUP BY customer
), moments AS (
    SELECT customer, seen AS at FROM customers
    UNION ALL
    SELECT k.customer, k.committed_at FROM commits k
    JOIN customers c ON c.customer = k.customer AND k.committed_at >= c.seen
    UNION ALL
    SELECT customer, %(end)s::timestamptz FROM customers
), gaps AS (
    SELECT customer, lag(at) OVER (PARTITION BY customer ORDER BY at) AS gap_from, at AS gap_to
    FROM moments
)
SELECT DISTINCT ON (g.customer) g.customer, coalesce(n.commits, 0) AS commits, g.gap_from,
       g.gap_to
FROM gaps g LEFT JOIN counted n ON n.customer = g.customer
WHERE g.gap_from IS NOT NULL
ORDER BY g.customer, g.gap_to - g.gap_from DESC, g.gap_from;
