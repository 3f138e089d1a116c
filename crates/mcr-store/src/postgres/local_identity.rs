//! Local identities on PostgreSQL: the statements of [`crate::local_identity`], each write in
//! one transaction, a resolution with its audit record (the audit advisory lock taken by the
//! append).

use super::audit::append_audit_in_tx;
use super::PostgresStore;

macro_rules! write_tx {
    ($this:ident, $tx:ident, $body:block) => {{
        let mut $tx = $this.pool.begin().await?;
        $body
        $tx.commit().await?;
    }};
}

crate::local_identity::local_identity_impl!(
    PostgresStore,
    write_tx,
    write_tx,
    append_audit_in_tx,
    super::match_review::delete_keys,
    batch
);

/// The batched statements of [`crate::local_identity`] on PostgreSQL: a batch's columns bound
/// as arrays (`UNNEST`), [`ROWS`] rows per statement (SQLite binds rows in chunks).
mod batch {
    use crate::common::ts;
    use crate::local_identity::{
        LocalCandidateRow, LocalLink, LocalPersonRow, LOCAL_CANDIDATE_COLUMNS,
        LOCAL_CANDIDATE_UPSERT, LOCAL_LINK_UPSERT, LOCAL_LINK_WRITE, LOCAL_PERSON_WRITE,
    };
    use crate::{RecordKey, Result};
    use chrono::NaiveDate;
    use sqlx::{PgConnection, Row as _};
    use std::collections::HashMap;

    /// Rows per statement.
    const ROWS: usize = 5_000;

    /// The open local identities made from these records, by record.
    pub(super) async fn open_origins(
        tx: &mut PgConnection,
        keys: &[RecordKey],
    ) -> Result<HashMap<(String, String), i64>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(ROWS) {
            let (source, local_id): (Vec<&str>, Vec<&str>) =
                chunk.iter().map(|(s, l)| (s.as_str(), l.as_str())).unzip();
            let rows = sqlx::query(
                "SELECT p.id, p.origin_source, p.origin_local_id FROM local_person p \
                 JOIN UNNEST($1::text[], $2::text[]) AS k (source, local_id) \
                 ON p.origin_source = k.source AND p.origin_local_id = k.local_id \
                 WHERE p.resolved_to IS NULL",
            )
            .bind(&source)
            .bind(&local_id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
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
        tx: &mut PgConnection,
        rows: &[&LocalPersonRow<'_>],
    ) -> Result<HashMap<(String, String), i64>> {
        let mut out = HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS) {
            let text = |f: &dyn for<'r> Fn(&'r LocalPersonRow<'r>) -> Option<&'r str>| -> Vec<Option<&str>> {
                chunk.iter().map(|row| f(row)).collect()
            };
            let birth: Vec<NaiveDate> = chunk.iter().map(|row| row.r.birth_date).collect();
            let answered = sqlx::query(&format!(
                "INSERT INTO {LOCAL_PERSON_WRITE} \
                 SELECT s, i, f, g, fn, gn, b, ge, p, pn, ad, a, a FROM UNNEST($1::text[], \
                 $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::date[], \
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) WITH ORDINALITY \
                 AS u (s, i, f, g, fn, gn, b, ge, p, pn, ad, a, n) ORDER BY n \
                 RETURNING id, origin_source, origin_local_id"
            ))
            .bind(text(&|row| Some(row.r.source.as_str())))
            .bind(text(&|row| Some(row.r.local_id.as_str())))
            .bind(text(&|row| Some(row.r.family.as_str())))
            .bind(text(&|row| Some(row.r.given.as_str())))
            .bind(text(&|row| Some(row.family_norm.as_str())))
            .bind(text(&|row| Some(row.given_norm.as_str())))
            .bind(&birth)
            .bind(text(&|row| row.r.gender.as_deref()))
            .bind(text(&|row| row.r.postcode.as_deref()))
            .bind(text(&|row| row.postcode_norm.as_deref()))
            .bind(text(&|row| row.r.address.as_deref()))
            .bind(text(&|row| Some(row.at.as_str())))
            .fetch_all(&mut *tx)
            .await?;
            for row in answered {
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
    pub(super) async fn upsert_links(tx: &mut PgConnection, links: &[&LocalLink]) -> Result<()> {
        for chunk in links.chunks(ROWS) {
            let text = |f: &dyn Fn(&LocalLink) -> Option<&str>| -> Vec<Option<&str>> {
                chunk.iter().map(|l| f(l)).collect()
            };
            let person: Vec<i64> = chunk.iter().map(|l| l.person.seq()).collect();
            let birth: Vec<Option<NaiveDate>> = chunk.iter().map(|l| l.birth_date).collect();
            let linked: Vec<String> = chunk.iter().map(|l| ts(&l.linked_at)).collect();
            sqlx::query(&format!(
                "INSERT INTO {LOCAL_LINK_WRITE} SELECT * FROM UNNEST($1::text[], $2::text[], \
                 $3::int8[], $4::text[], $5::text[], $6::text[], $7::date[], $8::text[], \
                 $9::text[]){LOCAL_LINK_UPSERT}"
            ))
            .bind(text(&|l| Some(l.source.as_str())))
            .bind(text(&|l| Some(l.local_id.as_str())))
            .bind(&person)
            .bind(text(&|l| Some(l.method.as_str())))
            .bind(text(&|l| Some(l.family.as_str())))
            .bind(text(&|l| Some(l.given.as_str())))
            .bind(&birth)
            .bind(text(&|l| l.postcode.as_deref()))
            .bind(&linked)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Pairs with local identities for review (one per record and identity).
    pub(super) async fn upsert_candidates(
        tx: &mut PgConnection,
        rows: &[&LocalCandidateRow],
    ) -> Result<()> {
        for chunk in rows.chunks(ROWS) {
            let text = |f: &dyn Fn(&LocalCandidateRow) -> Option<&str>| -> Vec<Option<&str>> {
                chunk.iter().map(|c| f(c)).collect()
            };
            let person: Vec<i64> = chunk.iter().map(|c| c.person.seq()).collect();
            let score: Vec<f64> = chunk.iter().map(|c| c.score).collect();
            let birth: Vec<Option<NaiveDate>> = chunk.iter().map(|c| c.birth_date).collect();
            let found: Vec<String> = chunk.iter().map(|c| ts(&c.found_at)).collect();
            sqlx::query(&format!(
                "INSERT INTO local_match_candidate ({LOCAL_CANDIDATE_COLUMNS}) SELECT * FROM \
                 UNNEST($1::text[], $2::text[], $3::int8[], $4::float8[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::date[], $10::text[], $11::text[], \
                 $12::text[]){LOCAL_CANDIDATE_UPSERT}"
            ))
            .bind(text(&|c| Some(c.source.as_str())))
            .bind(text(&|c| Some(c.local_id.as_str())))
            .bind(&person)
            .bind(&score)
            .bind(text(&|c| Some(c.agreement.as_str())))
            .bind(text(&|c| c.guard.as_deref()))
            .bind(text(&|c| Some(c.family.as_str())))
            .bind(text(&|c| Some(c.given.as_str())))
            .bind(&birth)
            .bind(text(&|c| c.gender.as_deref()))
            .bind(text(&|c| c.postcode.as_deref()))
            .bind(&found)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
