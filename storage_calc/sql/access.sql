-- Named queries of storage_calc.auth and storage_calc.grants, read with those of queries.sql.

-- name: has_customers_table
-- Whether the database has the platform's "Customers" table, whose keys `serve` checks.
SELECT to_regclass('"Customers"') IS NOT NULL AS found;

-- name: customer_key_holder
-- The customer of the path, if `key` is one of its comma-separated keys.
SELECT "Id" FROM "Customers"
WHERE "Id" = %(customer)s AND %(key)s = ANY (string_to_array("Keys", ','));

-- name: admin_key_holder
-- The administrator whose comma-separated keys hold `key` (the lowest id, were two to share it).
SELECT "Id" FROM "Customers"
WHERE "Administrator" AND %(key)s = ANY (string_to_array("Keys", ','))
ORDER BY "Id"
LIMIT 1;

-- name: grant_targets
-- What the roles of `db grants` are granted on: the database, the platform's tables as the
-- search path finds them (quoted, qualified where need be), the project's tables (but its record
-- of migrations), views and sequences, and the owner that creates them.
SELECT current_database() AS database,
       current_user AS owner,
       (SELECT array_agg(to_regclass(quote_ident(name))::text ORDER BY name)
        FROM unnest(%(platform)s::text[]) AS name
        WHERE to_regclass(quote_ident(name)) IS NOT NULL) AS platform,
       (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
        WHERE c.relnamespace = 'storage_calc'::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname <> 'migrations') AS tables,
       (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
        WHERE c.relnamespace = 'storage_calc'::regnamespace AND c.relkind = 'v') AS views,
       (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
        WHERE c.relnamespace = 'storage_calc'::regnamespace AND c.relkind = 'S') AS sequences;
