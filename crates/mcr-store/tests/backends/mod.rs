//! One story, a test on each backend: the story-style tests run the same steps on a fresh
//! SQLite store (in a temporary directory) and on a throwaway PostgreSQL cluster's database.

/// Two tests running `$story` (an `async fn(&dyn Store)`) on a fresh, migrated store:
/// `$sqlite` on SQLite, `$postgres` on PostgreSQL.
macro_rules! on_both_backends {
    ($story:path, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().expect("dir");
            let store = mcr_store::connect_and_migrate(&mcr_testkit::sqlite_url(dir.path()))
                .await
                .expect("open");
            $story(&*store).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let url = mcr_testkit::postgres_url().await;
            let store = mcr_store::connect_and_migrate(&url).await.expect("open");
            $story(&*store).await;
        }
    };
}

pub(crate) use on_both_backends;
