//! Local identities on SQLite: the statements of [`crate::local_identity`], writes on the
//! writer connection, a resolution in a `BEGIN IMMEDIATE` transaction with its audit record.

use super::audit::append_audit_in_tx;
use super::{SqliteStore, IMMEDIATE};

macro_rules! write_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let mut writer = $this.write_conn().await?;
        let mut $tx = sqlx::Connection::begin(&mut *writer).await?;
        $body
        $tx.commit().await?;
    }};
}

macro_rules! append_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let (_one_chain, mut writer) = $this.begin_append().await?;
        let mut $tx = sqlx::Connection::begin_with(&mut *writer, IMMEDIATE).await?;
        $body
        $tx.commit().await?;
    }};
}

crate::local_identity::local_identity_impl!(
    SqliteStore,
    write_tx,
    append_tx,
    append_audit_in_tx,
    super::match_review::sqlite_delete_keys,
    batch
);

/// The batched statements of [`crate::local_identity`] on SQLite: rows bound in chunks of
/// [`ROWS`] (PostgreSQL binds a batch as arrays).
mod batch {
    use crate::common::ts;
    use crate::local_identity::{
        LocalCandidateRow, LocalLink, LocalPersonRow, LOCAL_CANDIDATE_COLUMNS,
        LOCAL_CANDIDATE_UPSERT, LOCAL_LINK_UPSERT, LOCAL_LINK_WRITE, LOCAL_PERSON_WRITE,
    };
    use crate::{RecordKey, Result};
    use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection};
    use std::collections::HashMap;

    /// Rows per statement (at most 12 values each, far below SQLite's limit of 32766).
    const ROWS: usize = 400;

    /// The open local identities made from these records, by record.
    pub(super) async fn open_origins(
        tx: &mut SqliteConnection,
        keys: &[RecordKey],
    ) -> Result<HashMap<(String, String), i64>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT id, origin_source, origin_local_id FROM local_person \
                 WHERE resolved_to IS NULL AND (origin_source, origin_local_id) IN (VALUES ",
            );
            let mut sep = qb.separated(", ");
            for (source, local_id) in chunk {
                sep.push("(")
                    .push_bind_unseparated(source.as_str())
                    .push_unseparated(", ")
                    .push_bind_unseparated(local_id.as_str())
                    .push_unseparated(")");
            }
            qb.push(")");
            for row in qb.build().fetch_all(&mut *tx).await? {
                out.insert(
                    (
                        row.try_get("origin_source")?,
                        row.try_get("origin_local_id")?,
                    ),
                    row.try_get("id")?,
                );
            }
        }
        Ok(out)
    }

    /// New local identities, in order; their ids by record.
    pub(super) async fn insert_persons(
        tx: &mut SqliteConnection,
        rows: &[&LocalPersonRow<'_>],
    ) -> Result<HashMap<(String, String), i64>> {
        let mut out = HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {LOCAL_PERSON_WRITE} "));
            qb.push_values(chunk, |mut b, row| {
                b.push_bind(row.r.source.as_str())
                    .push_bind(row.r.local_id.as_str())
                    .push_bind(row.r.family.as_str())
                    .push_bind(row.r.given.as_str())
                    .push_bind(row.family_norm.as_str())
                    .push_bind(row.given_norm.as_str())
                    .push_bind(row.r.birth_date)
                    .push_bind(row.r.gender.as_deref())
                    .push_bind(row.r.postcode.as_deref())
                    .push_bind(row.postcode_norm.as_deref())
                    .push_bind(row.r.address.as_deref())
                    .push_bind(row.at.as_str())
                    .push_bind(row.at.as_str());
            });
            // SQLite answers `RETURNING` rows in no promised order: they say whose they are.
            qb.push(" RETURNING id, origin_source, origin_local_id");
            for row in qb.build().fetch_all(&mut *tx).await? {
                out.insert(
                    (
                        row.try_get("origin_source")?,
                        row.try_get("origin_local_id")?,
                    ),
                    row.try_get("id")?,
                );
            }
        }
        Ok(out)
    }

    /// Links to local identities, replacing the records' links there (one per record).
    pub(super) async fn upsert_links(
        tx: &mut SqliteConnection,
        links: &[&LocalLink],
    ) -> Result<()> {
        for chunk in links.chunks(ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {LOCAL_LINK_WRITE} "));
            qb.push_values(chunk, |mut b, l| {
                b.push_bind(l.source.as_str())
                    .push_bind(l.local_id.as_str())
                    .push_bind(l.person.seq())
                    .push_bind(l.method.as_str())
                    .push_bind(l.family.as_str())
                    .push_bind(l.given.as_str())
                    .push_bind(l.birth_date)
                    .push_bind(l.postcode.as_deref())
                    .push_bind(ts(&l.linked_at));
            });
            qb.push(LOCAL_LINK_UPSERT);
            qb.build().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Pairs with local identities for review (one per record and identity).
    pub(super) async fn upsert_candidates(
        tx: &mut SqliteConnection,
        rows: &[&LocalCandidateRow],
    ) -> Result<()> {
        for chunk in rows.chunks(ROWS) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO local_match_candidate ({LOCAL_CANDIDATE_COLUMNS}) "
            ));
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.source.as_str())
                    .push_bind(c.local_id.as_str())
                    .push_bind(c.person.seq())
                    .push_bind(c.score)
                    .push_bind(c.agreement.as_str())
                    .push_bind(c.guard.as_deref())
                    .push_bind(c.family.as_str())
                    .push_bind(c.given.as_str())
                    .push_bind(c.birth_date)
                    .push_bind(c.gender.as_deref())
                    .push_bind(c.postcode.as_deref())
                    .push_bind(ts(&c.found_at));
            });
            qb.push(LOCAL_CANDIDATE_UPSERT);
            qb.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}
