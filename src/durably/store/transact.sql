-- How a transaction step's transaction begins and ends (store/transact.py).

-- name: begin_serializable
BEGIN ISOLATION LEVEL SERIALIZABLE

-- name: begin_repeatable_read
BEGIN ISOLATION LEVEL REPEATABLE READ

-- name: begin_read_committed
BEGIN ISOLATION LEVEL READ COMMITTED

-- name: commit_transaction
COMMIT

-- name: rollback_transaction
ROLLBACK
