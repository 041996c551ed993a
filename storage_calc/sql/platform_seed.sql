-- DLCS platform (dlcs/protagonist) v1.11.5: "Images", "ImageStorage", "CustomerStorage" and "StoragePolicies"
-- as the DLCS.Repository EF Core (Npgsql) migrations leave them, 20210624095438_Initial through
-- 20250424133404_Remove manifest NQ prop, i.e. before 20260106124047_Add adjuncts table.
-- Column order is the order the migrations create and add the columns.

CREATE TABLE "Images" (
    "Id" character varying(500) NOT NULL,
    "Customer" integer NOT NULL,
    "Space" integer NOT NULL,
    "Created" timestamp with time zone NOT NULL,
    "Origin" character varying(1000) NOT NULL,
    "Tags" character varying(1000) NOT NULL,
    "Roles" character varying(1000) NOT NULL,
    "PreservedUri" character varying(1000) NOT NULL,
    "Reference1" character varying(500) NOT NULL,
    "Reference2" character varying(500) NOT NULL,
    "Reference3" character varying(500) NOT NULL,
    "NumberReference1" integer NOT NULL,
    "NumberReference2" integer NOT NULL,
    "NumberReference3" integer NOT NULL,
    "MaxUnauthorised" integer NOT NULL,
    "Width" integer NOT NULL,
    "Height" integer NOT NULL,
    "Error" character varying(1000) NOT NULL DEFAULT (NULL::character varying),
    "Batch" integer NOT NULL,
    "Finished" timestamp with time zone NULL,
    "Ingesting" boolean NOT NULL,
    "ImageOptimisationPolicy" character varying(500) NOT NULL DEFAULT ('fast-lossy'::character varying),
    "ThumbnailPolicy" character varying(500) NOT NULL DEFAULT ('original'::character varying),
    "Family" character(1) NOT NULL DEFAULT ('I'::"char"),
    "MediaType" character varying(100) NOT NULL DEFAULT ('image/jp2'::character varying),
    "Duration" bigint NOT NULL DEFAULT (0),
    "NotForDelivery" boolean NOT NULL DEFAULT FALSE,
    "DeliveryChannels" character varying(100) NOT NULL DEFAULT '',
    "Manifests" text[] NULL,
    CONSTRAINT "PK_Images" PRIMARY KEY ("Id")
);

CREATE TABLE "ImageStorage" (
    "Id" character varying(500) NOT NULL,
    "Customer" integer NOT NULL,
    "Space" integer NOT NULL,
    "ThumbnailSize" bigint NOT NULL,
    "Size" bigint NOT NULL,
    "LastChecked" timestamp with time zone NOT NULL,
    "CheckingInProgress" boolean NOT NULL,
    CONSTRAINT "PK_ImageStorage" PRIMARY KEY ("Id", "Customer", "Space")
);

CREATE TABLE "CustomerStorage" (
    "Customer" integer NOT NULL,
    "Space" integer NOT NULL,
    "StoragePolicy" character varying(500) NULL,
    "NumberOfStoredImages" bigint NOT NULL,
    "TotalSizeOfStoredImages" bigint NOT NULL,
    "TotalSizeOfThumbnails" bigint NOT NULL,
    "LastCalculated" timestamp with time zone NULL,
    CONSTRAINT "PK_CustomerStorage" PRIMARY KEY ("Customer", "Space")
);

CREATE TABLE "StoragePolicies" (
    "Id" character varying(500) NOT NULL,
    "MaximumNumberOfStoredImages" bigint NOT NULL,
    "MaximumTotalSizeOfStoredImages" bigint NOT NULL,
    CONSTRAINT "PK_StoragePolicies" PRIMARY KEY ("Id")
);

CREATE INDEX "IX_ImagesByBatch" ON "Images" ("Batch");

CREATE INDEX "IX_ImagesByCustomerSpace" ON "Images" ("Id", "Customer", "Space");

CREATE INDEX "IX_ImagesByErrors" ON "Images" ("Id", "Customer", "Error", "Batch") WHERE (("Error" IS NOT NULL) AND (("Error")::text <> ''::text));

CREATE INDEX "IX_ImagesByReference1" ON "Images" ("Reference1");

CREATE INDEX "IX_ImagesByReference2" ON "Images" ("Reference2");

CREATE INDEX "IX_ImagesByReference3" ON "Images" ("Reference3");

CREATE INDEX "IX_ImagesBySpace" ON "Images" ("Customer", "Space");

CREATE INDEX "IX_ImageStorageByCustomerSpace" ON "ImageStorage" ("Customer", "Space", "Id");

CREATE INDEX "IX_Images_Manifests" ON "Images" USING gin ("Manifests");
