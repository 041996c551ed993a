-- What S3 bills for storage per customer and space, beside the platform's figures and never in
-- them: current versions by storage class, billed sizes, noncurrent versions, delete markers and
-- unfinished multipart uploads. A NULL space holds the keys under the customer's prefix outside
-- any space. A customer's rows are replaced by deleting those of the scope computed and inserting
-- the new ones in one transaction, so the NULL space needs no unique key.
CREATE TABLE storage_calc.billable_storage (
    customer int NOT NULL,
    space int,
    current_objects bigint NOT NULL,
    current_bytes bigint NOT NULL,
    billed_bytes bigint NOT NULL,
    noncurrent_versions bigint NOT NULL,
    noncurrent_bytes bigint NOT NULL,
    delete_markers bigint NOT NULL,
    incomplete_uploads bigint NOT NULL,
    incomplete_upload_bytes bigint NOT NULL,
    oldest_upload timestamptz,
    by_storage_class jsonb NOT NULL,
    last_checked timestamptz NOT NULL,
    last_calculated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billable_storage_customer ON storage_calc.billable_storage (customer, space);
