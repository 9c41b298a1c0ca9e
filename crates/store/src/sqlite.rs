//! The store's queries on SQLite, the embedded default: the modules in `sql/` compiled for
//! `sqlx::Sqlite` (see `backend.rs`).

pub(crate) type DB = sqlx::Sqlite;
pub(crate) type DbRow = <DB as sqlx::Database>::Row;
pub(crate) type Conn = <DB as sqlx::Database>::Connection;
pub(crate) const DIALECT: crate::backend::Dialect = crate::backend::Dialect::Sqlite;

crate::backend::query_modules!();
