//! The store's queries on PostgreSQL, for several replicas: the modules in `sql/` compiled for
//! `sqlx::Postgres` (see `backend.rs`).

pub(crate) type DB = sqlx::Postgres;
pub(crate) type DbRow = <DB as sqlx::Database>::Row;
pub(crate) type Conn = <DB as sqlx::Database>::Connection;
pub(crate) const DIALECT: crate::backend::Dialect = crate::backend::Dialect::Postgres;

crate::backend::query_modules!();
