//! A merge of two index persons in the backend's open transaction ([`merge_steps`], and
//! [`merge_in_tx`] which reads the merge back): the steps both backends run, written once
//! with `$n` parameters. What a merge moves and carries is said in [`super`].

/// The merge's steps inside a transaction, for either backend: `$tx` is the open transaction
/// (`&mut *tx` is a connection), `$append` is the backend's `append_audit_in_tx`; the
/// statements' `$n` parameters serve both backends. Evaluates to
/// `Result<MergeOutcome<i64>>` (the merge's id); the caller commits on `Done`.
macro_rules! merge_steps {
    ($tx:ident, $append:path, $req:expr, $audit:expr, $chain:expr) => {{
        use $crate::common::ts;
        use $crate::patient_merge::{MergeCounts, MergeOutcome};
        let req = $req;
        let (retired, survivor) = (req.retired.as_str(), req.survivor.as_str());
        let refuse = |why: String| Ok::<_, $crate::StoreError>(MergeOutcome::Refused(why));
        loop {
            if retired == survivor {
                break refuse("A number cannot be merged into itself.".into());
            }
            let held: Vec<(String,)> = sqlx::query_as(
                "SELECT nhs_number FROM patient WHERE nhs_number IN ($1, $2)",
            )
            .bind(retired)
            .bind(survivor)
            .fetch_all(&mut *$tx)
            .await?;
            let into: Option<(String,)> = sqlx::query_as(
                "SELECT survivor FROM patient_merge WHERE retired = $1 AND undone_at IS NULL",
            )
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some((s,)) = into {
                break refuse(format!(
                    "NHS number {} is already merged into {}.",
                    req.retired.formatted(),
                    mcr_domain::NhsNumber::parse(&s).map(|n| n.formatted()).unwrap_or(s)
                ));
            }
            let survivor_retired: Option<(String,)> = sqlx::query_as(
                "SELECT survivor FROM patient_merge WHERE retired = $1 AND undone_at IS NULL",
            )
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
            if survivor_retired.is_some() {
                break refuse(format!(
                    "NHS number {} was itself merged into another record: merge into that one.",
                    req.survivor.formatted()
                ));
            }
            let chained: (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM patient_merge WHERE survivor = $1 AND undone_at IS NULL",
            )
            .bind(retired)
            .fetch_one(&mut *$tx)
            .await?;
            if chained.0 > 0 {
                break refuse(format!(
                    "Other NHS numbers are merged into {}: undo those merges first, or merge them into {} directly.",
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }
            if held.len() < 2 {
                break refuse(format!(
                    "Both NHS numbers must be patients in the index ({} and {}).",
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }
            let ruled_out: (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM match_decision d JOIN source_link l \
                 ON l.source = d.source AND l.local_id = d.local_id \
                 WHERE l.nhs_number = $1 AND d.nhs_number = $2 AND d.decision = 'not-a-match'",
            )
            .bind(retired)
            .bind(survivor)
            .fetch_one(&mut *$tx)
            .await?;
            if ruled_out.0 > 0 {
                break refuse(format!(
                    "{} record(s) linked to {} were decided not a match for {}: they cannot be one person unless that decision is wrong.",
                    ruled_out.0,
                    req.retired.formatted(),
                    req.survivor.formatted()
                ));
            }

            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO patient_merge (retired, survivor, reason, merged_by, merged_at, \
                 family, given, family_norm, given_norm, birth_date, gender, postcode, \
                 postcode_norm, address_line, gp_practice, patient_updated_at) \
                 SELECT nhs_number, $2, $3, $4, $5, family, given, family_norm, given_norm, \
                 birth_date, gender, postcode, postcode_norm, address_line, gp_practice, \
                 updated_at \
                 FROM patient WHERE nhs_number = $1 RETURNING id",
            )
            .bind(retired)
            .bind(survivor)
            .bind(&req.reason)
            .bind(&req.by)
            .bind(ts(&req.at))
            .fetch_one(&mut *$tx)
            .await?;
            let mut counts = MergeCounts::default();
            // The survivor's own links (kept, so an unmerge can tell what arrived later),
            // then the retired number's (moved).
            for (kind, of) in [("kept-link", survivor), ("link", retired)] {
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, source, local_id) \
                     SELECT $1, $2, source, local_id FROM source_link WHERE nhs_number = $3",
                )
                .bind(id)
                .bind(kind)
                .bind(of)
                .execute(&mut *$tx)
                .await?;
            }
            counts.links_moved = sqlx::query(
                "UPDATE source_link SET nhs_number = $2 WHERE nhs_number = $1",
            )
            .bind(retired)
            .bind(survivor)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            for (kind, table) in [("care-event", "care_event"), ("relationship", "relationship")] {
                sqlx::query(&format!(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) \
                     SELECT $1, $2, id FROM {table} WHERE nhs_number = $3"
                ))
                .bind(id)
                .bind(kind)
                .bind(retired)
                .execute(&mut *$tx)
                .await?;
                let moved = sqlx::query(&format!(
                    "UPDATE {table} SET nhs_number = $2 WHERE nhs_number = $1"
                ))
                .bind(retired)
                .bind(survivor)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if table == "care_event" {
                    counts.care_events_moved = moved;
                } else {
                    counts.relationships_moved = moved;
                }
            }
            // The stricter wins: the retired number's standing objection holds on the
            // merged person unless the survivor already objects.
            let standing = $crate::patient_merge::STANDING_OBJECTION;
            let retired_objects: Option<(String,)> = sqlx::query_as(standing)
                .bind(retired)
                .fetch_optional(&mut *$tx)
                .await?;
            let survivor_objects: Option<(String,)> = sqlx::query_as(standing)
                .bind(survivor)
                .fetch_optional(&mut *$tx)
                .await?;
            let active = |o: &Option<(String,)>| o.as_ref().is_some_and(|(s,)| s == "active");
            if active(&retired_objects) && !active(&survivor_objects) {
                let (oid,): (i64,) = sqlx::query_as(
                    "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                     override_reason, by_role, note, at, ends_at) \
                     VALUES ($1, 'active', $2, $3, NULL, NULL, $4, $5, NULL) RETURNING id",
                )
                .bind(survivor)
                .bind(&req.by)
                .bind(format!("merged-record:{retired}"))
                .bind(format!(
                    "Carried from NHS number {} when it was merged into this record.",
                    req.retired.formatted()
                ))
                .bind(ts(&req.at))
                .fetch_one(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'objection', $2)",
                )
                .bind(id)
                .bind(oid)
                .execute(&mut *$tx)
                .await?;
                counts.objection_carried = true;
            }
            counts.protection_carried = sqlx::query(
                "INSERT INTO protected_person (nhs_number, category, note, added_by, added_at) \
                 SELECT $2, category, note, $3, $4 FROM protected_person p WHERE p.nhs_number = $1 \
                 AND NOT EXISTS (SELECT 1 FROM protected_person s WHERE s.nhs_number = $2)",
            )
            .bind(retired)
            .bind(survivor)
            .bind(&req.by)
            .bind(ts(&req.at))
            .execute(&mut *$tx)
            .await?
            .rows_affected()
                > 0;
            if counts.protection_carried {
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind) VALUES ($1, 'protection')",
                )
                .bind(id)
                .execute(&mut *$tx)
                .await?;
            }
            // A restriction (PDS's S flag) holds on the merged person too: the retired
            // number's restricted status is carried to the survivor unless it is restricted
            // already, listed (with whether the survivor had a status row) for the unmerge.
            let retired_restricted: Option<(bool,)> = sqlx::query_as(
                "SELECT restricted FROM patient_status WHERE nhs_number = $1",
            )
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
            let survivor_status: Option<(bool,)> = sqlx::query_as(
                "SELECT restricted FROM patient_status WHERE nhs_number = $1",
            )
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
            if retired_restricted.is_some_and(|(r,)| r) && !survivor_status.is_some_and(|(r,)| r) {
                sqlx::query(
                    "INSERT INTO patient_status (nhs_number, restricted, deceased, said_by, updated_at) \
                     VALUES ($1, TRUE, NULL, 'merge', $2) ON CONFLICT (nhs_number) DO UPDATE SET \
                     restricted = TRUE, said_by = 'merge', updated_at = excluded.updated_at",
                )
                .bind(survivor)
                .bind(ts(&req.at))
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'restriction', $2)",
                )
                .bind(id)
                .bind(i64::from(survivor_status.is_some()))
                .execute(&mut *$tx)
                .await?;
            }
            counts.pairs_dropped = sqlx::query("DELETE FROM match_candidate WHERE nhs_number = $1")
                .bind(retired)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM patient WHERE nhs_number = $1")
                .bind(retired)
                .execute(&mut *$tx)
                .await?;
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE patient_merge SET links_moved = $2, care_events_moved = $3, \
                 relationships_moved = $4, objection_carried = $5, protection_carried = $6, \
                 pairs_dropped = $7 WHERE id = $1",
            )
            .bind(id)
            .bind(n(counts.links_moved))
            .bind(n(counts.care_events_moved))
            .bind(n(counts.relationships_moved))
            .bind(i64::from(counts.objection_carried))
            .bind(i64::from(counts.protection_carried))
            .bind(n(counts.pairs_dropped))
            .execute(&mut *$tx)
            .await?;
            let row = $append(&mut *$tx, &($audit)(&counts), $chain).await?;
            break Ok(MergeOutcome::Done(id, row));
        }
    }};
}
pub(crate) use merge_steps;

/// [`merge_steps`], then the merge read back: evaluates to `Result<MergeOutcome<MergeRow>>`;
/// the caller commits on `Done` (and drops the transaction on a refusal).
macro_rules! merge_in_tx {
    ($tx:ident, $append:path, $req:expr, $audit:expr, $chain:expr) => {{
        use $crate::patient_merge::{merge_by_id, merge_from_row, MergeOutcome};
        match $crate::patient_merge::merge_steps!($tx, $append, $req, $audit, $chain)? {
            MergeOutcome::Done(id, row) => {
                let merge = merge_by_id(id).query().fetch_one(&mut *$tx).await?;
                Ok::<_, $crate::StoreError>(MergeOutcome::Done(merge_from_row(&merge)?, row))
            }
            MergeOutcome::Refused(why) => Ok(MergeOutcome::Refused(why)),
        }
    }};
}
pub(crate) use merge_in_tx;
