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

-- name: orm_savepoint
-- (durably.orm) Where an ORM session's own commits and rollbacks begin, inside a
-- transaction step's transaction; the name may repeat (the newest one is meant).
SAVEPOINT durably_orm

-- name: orm_release
RELEASE SAVEPOINT durably_orm

-- name: orm_rollback
ROLLBACK TO SAVEPOINT durably_orm
