-- Migration 0001: the log's tables (ledger/storage/postgres.py reads and writes them).
-- bytea compares bytewise, so the aux primary key's order is the Storage protocol's scan order.

CREATE TABLE schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Small named values: the origin (written by the first batch), the latest checkpoint note (unsynced).
CREATE TABLE meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

-- The tree head of the last committed batch: exactly one row, NULL columns before the first commit.
-- Every commit locks this row (SELECT ... FOR UPDATE), so commits are serialised.
CREATE TABLE head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint CHECK (size >= 0),
    root bytea CHECK (octet_length(root) = 32),
    edge bytea CHECK (octet_length(edge) % 32 = 0)
);
INSERT INTO head (id) VALUES (true);

-- The tree head about to be signed (Storage.record_signed): one row, committed on its own.
CREATE TABLE signed_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint NOT NULL CHECK (size >= 0),
    root bytea NOT NULL CHECK (octet_length(root) = 32)
);

-- The log's entries by index.
CREATE TABLE entries (
    idx  bigint PRIMARY KEY CHECK (idx >= 0),
    data bytea NOT NULL
);

-- The dedup index: the first 16 bytes of each entry's leaf hash (ledger.storage.DEDUP_PREFIX).
CREATE TABLE leaf_index (
    prefix bytea NOT NULL,
    idx    bigint NOT NULL,
    PRIMARY KEY (prefix, idx)
);

-- Tree hashes, grouped by the log (ledger/log/tree.py): level `level`, nodes [grp * G, (grp + 1) * G).
CREATE TABLE hash_groups (
    level smallint NOT NULL CHECK (level >= 0),
    grp   bigint NOT NULL CHECK (grp >= 0),
    data  bytea NOT NULL,
    PRIMARY KEY (level, grp)
);
-- Random hashes do not compress: do not try.
ALTER TABLE hash_groups ALTER COLUMN data SET STORAGE EXTERNAL;

-- The integration hook's index (the registry's names, identities, lineage edges, digest postings).
CREATE TABLE aux (
    key   bytea PRIMARY KEY,
    value bytea NOT NULL
);
