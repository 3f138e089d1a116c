//! A story run on each backend with a raw connection to the store's database beside it, for
//! what the store itself never does: refuse every audit append (a trigger), to see a write and
//! its audit record fail together.

use sqlx::{PgPool, SqlitePool};

/// A raw connection to the store's database.
pub enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    pub async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        }
        .expect("raw sql");
    }

    /// From now on every audit append is refused (a trigger named `audit_refused`).
    pub async fn refuse_audit(&self) {
        match self {
            Raw::Sqlite(_) => {
                self.exec("CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END")
                    .await;
            }
            Raw::Postgres(_) => {
                self.exec(
                    "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN RAISE EXCEPTION 'refused by the test'; END; $$; \
                     CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION test_refuse();",
                )
                .await;
            }
        }
    }
}

/// Two tests running `$story` (an `async fn(&dyn Store, Raw)`) on a fresh, migrated store
/// with a raw connection beside it: `$sqlite` on SQLite, `$postgres` on PostgreSQL.
macro_rules! on_both_backends_raw {
    ($story:path, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().expect("dir");
            let url = mcr_testkit::sqlite_url(dir.path());
            let store = mcr_store::connect_and_migrate(&url).await.expect("open");
            let raw = sqlx::SqlitePool::connect(&url)
                .await
                .expect("raw connection");
            $story(&*store, raw::Raw::Sqlite(raw)).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let url = mcr_testkit::postgres_url().await;
            let store = mcr_store::connect_and_migrate(&url).await.expect("open");
            let raw = sqlx::PgPool::connect(&url).await.expect("raw connection");
            $story(&*store, raw::Raw::Postgres(raw)).await;
        }
    };
}

pub(crate) use on_both_backends_raw;
