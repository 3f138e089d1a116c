//! The writes of local identities, written once as a macro each backend instantiates around
//! its own transactions and batched statements (`sqlite/local_identity.rs`,
//! `postgres/local_identity.rs`).

/// The trait for a backend's store (a [`Runner`]): the reads above, and the writes both
/// backends run, written with `$n` parameters (which sqlx's SQLite driver reads as the same
/// numbered parameters). `$write` opens a write transaction; `$append`
/// opens one that may append to the audit trail; `$append_in_tx` appends in it;
/// `$delete_keys` deletes rows of a table by many `(source, local_id)` keys at once, in a
/// transaction; `$batch` is the backend's module of the other batched statements, many rows
/// each (`open_origins`, `insert_persons`, `upsert_links`, `upsert_candidates`).
macro_rules! local_identity_impl {
    ($store:ty, $write:ident, $append:ident, $append_in_tx:path, $delete_keys:path, $batch:ident) => {
        #[async_trait::async_trait]
        impl $crate::local_identity::LocalIdentityStore for $store {
            async fn put_local_persons(
                &self,
                records: &[$crate::local_identity::LocalPersonRecord],
            ) -> $crate::Result<Vec<(mcr_domain::LocalPersonId, bool)>> {
                use $crate::local_identity::{LocalLink, LocalPersonRow};
                let mut out = Vec::with_capacity(records.len());
                if records.is_empty() {
                    return Ok(out);
                }
                let rows: Vec<LocalPersonRow<'_>> =
                    records.iter().map(LocalPersonRow::new).collect();
                let keys: Vec<$crate::RecordKey> = records
                    .iter()
                    .map(|r| (r.source.clone(), r.local_id.clone()))
                    .collect();
                let this = self;
                $write!(this, tx, {
                    // Many rows per statement: a pass at a region's size makes tens of
                    // thousands. The open identities made from these records already, then
                    // one new identity for each other record (its first occurrence).
                    let held = $batch::open_origins(&mut *tx, &keys).await?;
                    let mut first = std::collections::HashSet::new();
                    let fresh: Vec<&LocalPersonRow<'_>> = rows
                        .iter()
                        .filter(|row| {
                            let key = row.key();
                            !held.contains_key(&key) && first.insert(key)
                        })
                        .collect();
                    let made = $batch::insert_persons(&mut *tx, &fresh).await?;
                    // Each record in order: new, or refreshing the identity held (a record
                    // given twice refreshes the identity its first occurrence made).
                    let mut seen = std::collections::HashSet::new();
                    let mut links = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let key = row.key();
                        let (seq, new) = match held.get(&key) {
                            Some(&seq) => (seq, false),
                            None => {
                                let seq = *made.get(&key).ok_or_else(|| {
                                    $crate::StoreError::Corrupt(
                                        "a new local identity was not answered".into(),
                                    )
                                })?;
                                (seq, seen.insert(key))
                            }
                        };
                        if !new {
                            sqlx::query(
                                "UPDATE local_person SET family = $2, given = $3, \
                                 family_norm = $4, given_norm = $5, birth_date = $6, \
                                 gender = $7, postcode = $8, postcode_norm = $9, \
                                 updated_at = $10, address_line = $11 WHERE id = $1",
                            )
                            .bind(seq)
                            .bind(&row.r.family)
                            .bind(&row.r.given)
                            .bind(&row.family_norm)
                            .bind(&row.given_norm)
                            .bind(row.r.birth_date)
                            .bind(row.r.gender.as_deref())
                            .bind(row.r.postcode.as_deref())
                            .bind(row.postcode_norm.as_deref())
                            .bind(&row.at)
                            .bind(row.r.address.as_deref())
                            .execute(&mut *tx)
                            .await?;
                        }
                        let person = $crate::local_identity::local_id_from("local_person.id", seq)?;
                        out.push((person, new));
                        links.push(LocalLink {
                            person,
                            source: row.r.source.clone(),
                            local_id: row.r.local_id.clone(),
                            method: $crate::LinkMethod::LocalIdentity,
                            family: row.r.family.clone(),
                            given: row.r.given.clone(),
                            birth_date: Some(row.r.birth_date),
                            postcode: row.r.postcode.clone(),
                            linked_at: row.r.at,
                        });
                    }
                    // Each record is linked to its identity and loses any link to an NHS
                    // number.
                    let links = $crate::common::last_per_key(&links, |l| {
                        (l.source.clone(), l.local_id.clone())
                    });
                    $batch::upsert_links(&mut *tx, &links).await?;
                    $delete_keys(&mut *tx, "source_link", &keys).await?;
                });
                Ok(out)
            }

            async fn open_local_persons(
                &self,
            ) -> $crate::Result<Vec<$crate::local_identity::LocalPerson>> {
                $crate::local_identity::open_local_persons(self).await
            }

            async fn local_person(
                &self,
                id: mcr_domain::LocalPersonId,
            ) -> $crate::Result<Option<$crate::local_identity::LocalPerson>> {
                $crate::local_identity::local_person(self, id).await
            }

            async fn local_links(
                &self,
                id: mcr_domain::LocalPersonId,
            ) -> $crate::Result<Vec<$crate::local_identity::LocalLink>> {
                $crate::local_identity::local_links(self, id).await
            }

            async fn local_link_keys(
                &self,
            ) -> $crate::Result<Vec<($crate::RecordKey, mcr_domain::LocalPersonId)>> {
                $crate::local_identity::local_link_keys(self).await
            }

            async fn upsert_local_links(
                &self,
                links: &[$crate::local_identity::LocalLink],
            ) -> $crate::Result<()> {
                if links.is_empty() {
                    return Ok(());
                }
                let rows =
                    $crate::common::last_per_key(links, |l| (l.source.clone(), l.local_id.clone()));
                let keys: Vec<$crate::RecordKey> = rows
                    .iter()
                    .map(|l| (l.source.clone(), l.local_id.clone()))
                    .collect();
                let this = self;
                $write!(this, tx, {
                    $batch::upsert_links(&mut *tx, &rows).await?;
                    $delete_keys(&mut *tx, "source_link", &keys).await?;
                });
                Ok(())
            }

            async fn remove_local_links(
                &self,
                records: &[$crate::RecordKey],
            ) -> $crate::Result<u64> {
                if records.is_empty() {
                    return Ok(0);
                }
                let removed;
                let this = self;
                $write!(this, tx, {
                    removed = $delete_keys(&mut *tx, "local_link", records).await?;
                });
                Ok(removed)
            }

            async fn resolve_local_person(
                &self,
                r: &$crate::local_identity::LocalResolution,
                audit: &$crate::AuditAppend,
                chain: &$crate::ChainFn,
            ) -> $crate::Result<Option<(u64, $crate::AuditRow)>> {
                use $crate::common::ts;
                let this = self;
                let mut done = None;
                $append!(this, tx, {
                    let sql = "SELECT id FROM local_person WHERE id = $1 AND resolved_to IS NULL";
                    let open: Option<i64> = sqlx::query_scalar(&sql)
                        .bind(r.person.seq())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if open.is_some() {
                        let at = ts(&r.at);
                        let moved = sqlx::query(
                            "INSERT INTO source_link (source, local_id, nhs_number, method, \
                             family, given, birth_date, postcode, linked_at) \
                             SELECT source, local_id, $2, $3, family, given, birth_date, \
                             postcode, $4 FROM local_link WHERE local_person = $1 \
                             ON CONFLICT (source, local_id) DO NOTHING",
                        )
                        .bind(r.person.seq())
                        .bind(r.nhs_number.as_str())
                        .bind(r.method.as_str())
                        .bind(&at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        // Its pairs in review name a person no longer matched: the next sync
                        // finds them again against the NHS number.
                        for table in ["local_link", "local_match_candidate"] {
                            sqlx::query(&format!("DELETE FROM {table} WHERE local_person = $1"))
                                .bind(r.person.seq())
                                .execute(&mut *tx)
                                .await?;
                        }
                        // A number merged into another: the links go to the survivor.
                        sqlx::query(&$crate::patient_merge::redirect_sql("source_link"))
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "UPDATE local_person SET resolved_to = $2, resolved_method = $3, \
                             resolved_at = $4, links_moved = $5 WHERE id = $1",
                        )
                        .bind(r.person.seq())
                        .bind(r.nhs_number.as_str())
                        .bind(r.method.as_str())
                        .bind(&at)
                        .bind(i64::try_from(moved).unwrap_or(i64::MAX))
                        .execute(&mut *tx)
                        .await?;
                        let row = $append_in_tx(&mut tx, audit, chain).await?;
                        done = Some((moved, row));
                    }
                });
                Ok(done)
            }

            async fn replace_local_candidates(
                &self,
                evaluated: &[$crate::RecordKey],
                candidates: &[$crate::local_identity::LocalCandidateRow],
            ) -> $crate::Result<()> {
                if evaluated.is_empty() && candidates.is_empty() {
                    return Ok(());
                }
                let rows = $crate::common::last_per_key(candidates, |c| {
                    (c.source.clone(), c.local_id.clone(), c.person)
                });
                let this = self;
                $write!(this, tx, {
                    // Many records per statement: a pass evaluates every waiting record.
                    $delete_keys(&mut *tx, "local_match_candidate", evaluated).await?;
                    $batch::upsert_candidates(&mut *tx, &rows).await?;
                });
                Ok(())
            }

            async fn local_candidates(
                &self,
            ) -> $crate::Result<Vec<$crate::local_identity::LocalCandidateRow>> {
                $crate::local_identity::local_candidates(self).await
            }

            async fn search_local_persons(
                &self,
                family: &str,
                birth_date: Option<chrono::NaiveDate>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::local_identity::LocalPerson>> {
                $crate::local_identity::search_local_persons(self, family, birth_date, limit).await
            }
        }
    };
}
pub(crate) use local_identity_impl;
