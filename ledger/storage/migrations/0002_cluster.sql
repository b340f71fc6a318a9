-- Migration 0002: several frontends on one database (ledger/cluster/, docs/operations.md "Running on PostgreSQL").
-- Every frontend sequences entries under the coordinator row; one at a time (the holder of the signer
-- advisory lock) integrates them into the tree and signs; every signed checkpoint is kept here.

-- The next index to assign. A sequencing transaction locks this row (SELECT ... FOR UPDATE), writes its
-- entries at [next_index, next_index + n) and moves it on, so every index is assigned exactly once.
CREATE TABLE coordinator (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    next_index bigint NOT NULL CHECK (next_index >= 0)
);
INSERT INTO coordinator (id, next_index) SELECT true, COALESCE((SELECT size FROM head), 0);

-- The fencing token of the signer: each process that takes the signer lock increments epoch first, and
-- every head commit checks it in the same transaction, so a signer that lost the lock commits nothing.
CREATE TABLE signer_lease (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch  bigint NOT NULL CHECK (epoch >= 0),
    holder text NOT NULL,
    since  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO signer_lease (id, epoch, holder) VALUES (true, 0, '');

-- Signed checkpoints, committed in the same transaction as the tree head they sign: what every frontend
-- serves (the row of the largest size). Old rows beyond the kept history are pruned by the signer.
CREATE TABLE checkpoints (
    size      bigint PRIMARY KEY CHECK (size >= 0),
    root      bytea NOT NULL CHECK (octet_length(root) = 32),
    note      bytea NOT NULL,
    epoch     bigint NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
