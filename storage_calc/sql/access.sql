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
