//! An unmerge in the backend's open transaction ([`unmerge_steps`], and [`unmerge_in_tx`]
//! which reads the merge first and back after): the steps both backends run, written once with
//! `$n` parameters. What an unmerge moves back is said in [`super`].

/// The unmerge's steps inside a transaction, as [`merge_steps`]. `$merge` is the merge as
/// read in the transaction (a standing one).
macro_rules! unmerge_steps {
    ($tx:ident, $append:path, $req:expr, $merge:expr, $audit:expr, $chain:expr) => {{
        use $crate::common::ts;
        use $crate::patient_merge::{MergeOutcome, UnmergeCounts};
        let req = $req;
        let merge: &$crate::patient_merge::MergeRow = $merge;
        let id = merge.id;
        let (retired, survivor) = (merge.retired.as_str(), merge.survivor.as_str());
        let mut counts = UnmergeCounts::default();
        sqlx::query(
            "INSERT INTO patient (nhs_number, family, given, family_norm, given_norm, \
             birth_date, gender, postcode, postcode_norm, address_line, gp_practice, \
             updated_at) \
             SELECT retired, family, given, family_norm, given_norm, birth_date, gender, \
             postcode, postcode_norm, address_line, gp_practice, patient_updated_at \
             FROM patient_merge \
             WHERE id = $1 ON CONFLICT (nhs_number) DO NOTHING",
        )
        .bind(id)
        .execute(&mut *$tx)
        .await?;
        counts.links_back = sqlx::query(
            "UPDATE source_link SET nhs_number = $2 WHERE nhs_number = $3 AND EXISTS \
             (SELECT 1 FROM patient_merge_item i WHERE i.merge_id = $1 AND i.kind = 'link' \
             AND i.source = source_link.source AND i.local_id = source_link.local_id)",
        )
        .bind(id)
        .bind(retired)
        .bind(survivor)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        // Links that arrived while merged: whose they are is not known. Sent to review
        // against both numbers, never guessed.
        let arrived: Vec<(String, String, String, String, Option<chrono::NaiveDate>, Option<String>)> =
            sqlx::query_as(
                "SELECT source, local_id, family, given, birth_date, postcode FROM source_link \
                 WHERE nhs_number = $2 AND NOT EXISTS (SELECT 1 FROM patient_merge_item i \
                 WHERE i.merge_id = $1 AND i.kind IN ('link', 'kept-link') \
                 AND i.source = source_link.source AND i.local_id = source_link.local_id)",
            )
            .bind(id)
            .bind(survivor)
            .fetch_all(&mut *$tx)
            .await?;
        for (source, local_id, family, given, birth_date, postcode) in &arrived {
            for nhs in [survivor, retired] {
                sqlx::query(
                    "INSERT INTO match_candidate (source, local_id, nhs_number, kind, score, \
                     agreement, guard, family, given, birth_date, gender, postcode, found_at) \
                     VALUES ($1, $2, $3, 'unmerged', 0, 'linked-while-merged', NULL, $4, $5, $6, \
                     NULL, $7, $8) ON CONFLICT (source, local_id, nhs_number) DO UPDATE SET \
                     kind = excluded.kind, agreement = excluded.agreement, found_at = excluded.found_at",
                )
                .bind(source)
                .bind(local_id)
                .bind(nhs)
                .bind(family)
                .bind(given)
                .bind(*birth_date)
                .bind(postcode)
                .bind(ts(&req.at))
                .execute(&mut *$tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO unmatched_record (source, local_id, reason, candidates, seen_at) \
                 VALUES ($1, $2, 'unmerged', 2, $3) ON CONFLICT (source, local_id) DO UPDATE SET \
                 reason = excluded.reason, candidates = excluded.candidates, seen_at = excluded.seen_at",
            )
            .bind(source)
            .bind(local_id)
            .bind(ts(&req.at))
            .execute(&mut *$tx)
            .await?;
            sqlx::query("DELETE FROM source_link WHERE source = $1 AND local_id = $2")
                .bind(source)
                .bind(local_id)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(
                "INSERT INTO patient_merge_item (merge_id, kind, source, local_id) \
                 VALUES ($1, 'review', $2, $3)",
            )
            .bind(id)
            .bind(source)
            .bind(local_id)
            .execute(&mut *$tx)
            .await?;
        }
        counts.sent_to_review = u64::try_from(arrived.len()).unwrap_or(u64::MAX);
        for (kind, table) in [("care-event", "care_event"), ("relationship", "relationship")] {
            let back = sqlx::query(&format!(
                "UPDATE {table} SET nhs_number = $2 WHERE nhs_number = $3 AND id IN \
                 (SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = $4)"
            ))
            .bind(id)
            .bind(retired)
            .bind(survivor)
            .bind(kind)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if table == "care_event" {
                counts.care_events_back = back;
            } else {
                counts.relationships_back = back;
            }
        }
        // What the merge carried goes: the survivor's own history is as it was.
        sqlx::query(
            "DELETE FROM objection WHERE nhs_number = $2 AND id IN \
             (SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = 'objection')",
        )
        .bind(id)
        .bind(survivor)
        .execute(&mut *$tx)
        .await?;
        if merge.counts.protection_carried {
            sqlx::query("DELETE FROM protected_person WHERE nhs_number = $1")
                .bind(survivor)
                .execute(&mut *$tx)
                .await?;
        }
        // A restriction the merge carried goes, unless PDS has spoken of the survivor since.
        let carried: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT row_id FROM patient_merge_item WHERE merge_id = $1 AND kind = 'restriction'",
        )
        .bind(id)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some((had_row,)) = carried {
            let restore = if had_row == Some(1) {
                "UPDATE patient_status SET restricted = FALSE WHERE nhs_number = $1 AND said_by = 'merge'"
            } else {
                "DELETE FROM patient_status WHERE nhs_number = $1 AND said_by = 'merge'"
            };
            sqlx::query(restore)
                .bind(survivor)
                .execute(&mut *$tx)
                .await?;
        }
        // An objection recorded on the merged person while merged may have been either
        // person's: it holds for both (never lose an opt-out).
        let during: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM objection WHERE nhs_number = $1 AND at >= $2",
        )
        .bind(survivor)
        .bind(ts(&merge.merged_at))
        .fetch_one(&mut *$tx)
        .await?;
        let standing = $crate::patient_merge::STANDING_OBJECTION;
        let active = |o: &Option<(String,)>| o.as_ref().is_some_and(|(s,)| s == "active");
        let survivor_objects: Option<(String,)> = sqlx::query_as(standing)
            .bind(survivor)
            .fetch_optional(&mut *$tx)
            .await?;
        let retired_objects: Option<(String,)> = sqlx::query_as(standing)
            .bind(retired)
            .fetch_optional(&mut *$tx)
            .await?;
        if during.0 > 0 && active(&survivor_objects) && !active(&retired_objects) {
            let (oid,): (i64,) = sqlx::query_as(
                "INSERT INTO objection (nhs_number, state, recorded_by, on_whose_word, \
                 override_reason, by_role, note, at, ends_at) \
                 VALUES ($1, 'active', $2, $3, NULL, NULL, $4, $5, NULL) RETURNING id",
            )
            .bind(retired)
            .bind(&req.by)
            .bind(format!("merged-record:{survivor}"))
            .bind(format!(
                "Recorded on the merged record {} while this number was merged into it; kept when the merge was undone.",
                merge.survivor.formatted()
            ))
            .bind(ts(&req.at))
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO patient_merge_item (merge_id, kind, row_id) VALUES ($1, 'objection-back', $2)",
            )
            .bind(id)
            .bind(oid)
            .execute(&mut *$tx)
            .await?;
            counts.objection_carried_back = true;
        }
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE patient_merge SET undone_by = $2, undone_at = $3, undo_reason = $4, \
             links_back = $5, sent_to_review = $6, care_events_back = $7, \
             relationships_back = $8, objection_carried_back = $9 WHERE id = $1",
        )
        .bind(id)
        .bind(&req.by)
        .bind(ts(&req.at))
        .bind(&req.reason)
        .bind(n(counts.links_back))
        .bind(n(counts.sent_to_review))
        .bind(n(counts.care_events_back))
        .bind(n(counts.relationships_back))
        .bind(i64::from(counts.objection_carried_back))
        .execute(&mut *$tx)
        .await?;
        let row = $append(&mut *$tx, &($audit)(&counts), $chain).await?;
        Ok::<_, $crate::StoreError>(MergeOutcome::Done(id, row))
    }};
}
pub(crate) use unmerge_steps;

/// An unmerge in the backend's open transaction: the merge read with `$select` (the backend's
/// [`merge_by_id`], or [`merge_for_update`]), refused when there is none or it is undone
/// already, then [`unmerge_steps`] and the merge read back. Evaluates to
/// `Result<MergeOutcome<MergeRow>>`; the caller commits on `Done`.
macro_rules! unmerge_in_tx {
    ($tx:ident, $append:path, $req:expr, $select:expr, $audit:expr, $chain:expr) => {{
        use $crate::patient_merge::{merge_by_id, merge_from_row, MergeOutcome};
        'unmerge: {
            let merge = match $select.query().fetch_optional(&mut *$tx).await? {
                Some(r) => merge_from_row(&r)?,
                None => break 'unmerge Ok(MergeOutcome::Refused("There is no such merge.".into())),
            };
            if merge.undone.is_some() {
                break 'unmerge Ok(MergeOutcome::Refused(
                    "This merge has already been undone.".into(),
                ));
            }
            match $crate::patient_merge::unmerge_steps!($tx, $append, $req, &merge, $audit, $chain)?
            {
                MergeOutcome::Done(id, row) => {
                    let merge = merge_by_id(id).query().fetch_one(&mut *$tx).await?;
                    Ok::<_, $crate::StoreError>(MergeOutcome::Done(merge_from_row(&merge)?, row))
                }
                MergeOutcome::Refused(why) => Ok(MergeOutcome::Refused(why)),
            }
        }
    }};
}
pub(crate) use unmerge_in_tx;
