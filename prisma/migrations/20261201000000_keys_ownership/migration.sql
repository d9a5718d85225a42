-- API keys, ownership and visibility of generations, and server-wide secrets (issue #10).
CREATE TYPE "Visibility" AS ENUM ('PRIVATE', 'PUBLIC');

-- A key is stored as the SHA-256 of its text: keys are 256 random bits, so a fast hash is enough
-- (no password-style stretching), and the text itself is shown once, at creation.
CREATE TABLE "ApiKey" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "admin" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "revokedAt" TIMESTAMPTZ(3),
    CONSTRAINT "ApiKey_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "ApiKey_name_key" ON "ApiKey"("name");
CREATE UNIQUE INDEX "ApiKey_hash_key" ON "ApiKey"("hash");

-- Generations made before keys existed stay visible to everyone, as they were.
ALTER TABLE "Generation" ADD COLUMN "ownerKeyId" UUID,
    ADD COLUMN "ownerAddress" TEXT,
    ADD COLUMN "visibility" "Visibility" NOT NULL DEFAULT 'PUBLIC';
ALTER TABLE "Generation" ADD CONSTRAINT "Generation_ownerKeyId_fkey" FOREIGN KEY ("ownerKeyId") REFERENCES "ApiKey"("id") ON DELETE SET NULL ON UPDATE CASCADE;
CREATE INDEX "Generation_ownerKeyId_status_idx" ON "Generation"("ownerKeyId", "status");
CREATE INDEX "Generation_ownerAddress_createdAt_idx" ON "Generation"("ownerAddress", "createdAt");

-- Secrets every API process must share (the key that signs image URLs), made once by whichever
-- process needs one first.
CREATE TABLE "Secret" (
    "name" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "Secret_pkey" PRIMARY KEY ("name")
);
