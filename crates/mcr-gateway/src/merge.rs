//! Merge and unmerge of index persons, for records staff and privacy officers: two NHS
//! numbers found to be one person (a superseded number, a duplicate registration) become one,
//! the retired number pointing to the survivor; a wrong merge is undone, moving back exactly
//! what moved. What moves and why is the store's to say (`mcr_store::MergeStore`); here: who
//! may, the side-by-side preview the confirmation shows, a reason always, and the audit of
//! every read, merge, unmerge and refusal (written in one transaction with the change).

use crate::{Gateway, GatewayError, RequestContext};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::{
    IndexedPatient, MergeCounts, MergeOutcome, MergeRequest, MergeRow, SourceLink, UnmergeCounts,
    UnmergeRequest,
};

/// The longest reason kept.
pub const MERGE_REASON_MAX: usize = 500;

/// One side of a merge as the confirmation shows it.
#[derive(Debug, Clone)]
pub struct MergeSide {
    pub patient: IndexedPatient,
    /// Its source links, each with the source organisation's name.
    pub links: Vec<(String, SourceLink)>,
    pub care_events: usize,
    pub relationships: usize,
    pub permissions: usize,
    /// The objection register stands at an opt-out.
    pub objects: bool,
}

/// What a merge would do, for the person to confirm.
#[derive(Debug, Clone)]
pub struct MergePreview {
    pub retired: MergeSide,
    pub survivor: MergeSide,
}

impl Gateway {
    /// Who may merge and unmerge these numbers: the same people as may review matching, and
    /// as there, records staff only where their own organisation holds a record of one of the
    /// two (a privacy officer, any).
    async fn may_merge(&self, ctx: &RequestContext, numbers: &[&NhsNumber]) -> Result<(), String> {
        let scope = self.may_review_matches(ctx)?;
        if scope == crate::matching::MatchScope::Region {
            return Ok(());
        }
        for nhs in numbers {
            let Ok(links) = self.store.links(nhs).await else {
                return Err("Whether your organisation holds a record of this person could not be read just now. Nothing was merged; try again.".into());
            };
            if links.iter().any(|l| self.in_scope(&scope, &l.source)) {
                return Ok(());
            }
        }
        Err("You can merge only people your organisation holds a record of; a privacy officer can merge the others.".into())
    }

    async fn merge_refused(
        &self,
        ctx: &RequestContext,
        action: Action,
        patient: Option<&NhsNumber>,
        why: String,
        invalid: bool,
    ) -> GatewayError {
        let mut event = self.event(ctx, action, patient.map(NhsNumber::as_str));
        event.outcome = Outcome::Deny;
        event.detail = Some(why.clone());
        match self.audit(&event).await {
            Ok(_) if invalid => GatewayError::Invalid(why),
            Ok(_) => GatewayError::Forbidden(why),
            Err(e) => e,
        }
    }

    async fn merge_side(&self, nhs: &NhsNumber) -> Result<Option<MergeSide>, GatewayError> {
        let unavailable = |_| GatewayError::StoreUnavailable;
        let read = self.store.view_inputs(nhs).await.map_err(unavailable)?;
        let Some(patient) = read.patient else {
            return Ok(None);
        };
        let g = &read.governance;
        Ok(Some(MergeSide {
            links: read
                .links
                .into_iter()
                .map(|l| (self.source_name(&l.source), l))
                .collect(),
            care_events: g.care_events.len(),
            relationships: g.relationships.len(),
            permissions: g.permissions.len(),
            objects: g
                .objections
                .iter()
                .rev()
                .find(|o| o.state == "active" || o.state == "withdrawn")
                .is_some_and(|o| o.state == "active"),
            patient,
        }))
    }

    /// The two index persons side by side, with what would move: the confirmation step.
    /// Audited (`read-merges`, naming the retired number), refusals too.
    pub async fn merge_preview(
        &self,
        ctx: &RequestContext,
        retired: &NhsNumber,
        survivor: &NhsNumber,
    ) -> Result<MergePreview, GatewayError> {
        const ACTION: Action = Action::ReadMerges;
        if let Err(why) = self.may_merge(ctx, &[retired, survivor]).await {
            return Err(self
                .merge_refused(ctx, ACTION, Some(retired), why, false)
                .await);
        }
        if retired == survivor {
            let why = "Give two different NHS numbers: the one to retire and the one to keep.";
            return Err(self
                .merge_refused(ctx, ACTION, Some(retired), why.into(), true)
                .await);
        }
        let (old, new) = (
            self.merge_side(retired).await?,
            self.merge_side(survivor).await?,
        );
        let (Some(old), Some(new)) = (old, new) else {
            let why = match self.store.merged_into(retired).await {
                Ok(Some(m)) => format!(
                    "NHS number {} is already merged into {}.",
                    retired.formatted(),
                    m.survivor.formatted()
                ),
                _ => format!(
                    "Both NHS numbers must be patients in the index ({} and {}).",
                    retired.formatted(),
                    survivor.formatted()
                ),
            };
            return Err(self
                .merge_refused(ctx, ACTION, Some(retired), why, true)
                .await);
        };
        let mut event = self.event(ctx, ACTION, Some(retired.as_str()));
        event.outcome = Outcome::Permit;
        event.detail = Some(format!("merge preview: into {survivor}"));
        self.audit(&event).await?;
        Ok(MergePreview {
            retired: old,
            survivor: new,
        })
    }

    /// Merge `retired` into `survivor`, with the person's reason. Audited (`merge-patients`,
    /// naming the retired number, the survivor, what moved and the reason) in the same
    /// transaction; a refusal is audited and said.
    pub async fn merge_patients(
        &self,
        ctx: &RequestContext,
        retired: &NhsNumber,
        survivor: &NhsNumber,
        reason: &str,
    ) -> Result<MergeRow, GatewayError> {
        const ACTION: Action = Action::MergePatients;
        if let Err(why) = self.may_merge(ctx, &[retired, survivor]).await {
            return Err(self
                .merge_refused(ctx, ACTION, Some(retired), why, false)
                .await);
        }
        let reason = match checked_reason(reason) {
            Ok(r) => r,
            Err(why) => {
                return Err(self
                    .merge_refused(ctx, ACTION, Some(retired), why, true)
                    .await)
            }
        };
        let request = MergeRequest {
            retired: retired.clone(),
            survivor: survivor.clone(),
            reason: reason.clone(),
            by: ctx.principal.user_id.clone(),
            at: self.clock.now(),
        };
        let mut event = self.event(ctx, ACTION, Some(retired.as_str()));
        event.outcome = Outcome::Recorded;
        let fallback = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let audit = |c: &MergeCounts| {
            let mut e = event.clone();
            e.basis = Some(format!("merged-into:{survivor}"));
            e.detail = Some(format!(
                "merged into {survivor}: {} link(s), {} care event(s), {} relationship(s) moved; \
                 objection carried: {}; protection carried: {}; {} review pair(s) dropped; reason: {reason}",
                c.links_moved,
                c.care_events_moved,
                c.relationships_moved,
                yes_no(c.objection_carried),
                yes_no(c.protection_carried),
                c.pairs_dropped,
            ));
            mcr_audit::to_append(&e).unwrap_or_else(|_| fallback.clone())
        };
        let outcome = self
            .store
            .merge_patients(&request, &audit, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "merge not recorded");
                GatewayError::AuditUnavailable
            })?;
        match outcome {
            MergeOutcome::Done(merge, row) => {
                self.after_append(&row).await;
                tracing::info!(
                    merge = merge.id,
                    links = merge.counts.links_moved,
                    "patients merged"
                );
                Ok(merge)
            }
            MergeOutcome::Refused(why) => Err(self
                .merge_refused(ctx, ACTION, Some(retired), why, true)
                .await),
        }
    }

    /// Undo a standing merge, with the person's reason. Audited (`unmerge-patients`) in the
    /// same transaction; a refusal is audited and said.
    pub async fn unmerge_patients(
        &self,
        ctx: &RequestContext,
        merge_id: i64,
        reason: &str,
    ) -> Result<MergeRow, GatewayError> {
        const ACTION: Action = Action::UnmergePatients;
        let merge = self
            .store
            .merge(merge_id)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let retired = merge.as_ref().map(|m| m.retired.clone());
        let numbers: Vec<&NhsNumber> = merge.iter().map(|m| &m.survivor).collect();
        if let Err(why) = self.may_merge(ctx, &numbers).await {
            return Err(self
                .merge_refused(ctx, ACTION, retired.as_ref(), why, false)
                .await);
        }
        let reason = match checked_reason(reason) {
            Ok(r) => r,
            Err(why) => {
                return Err(self
                    .merge_refused(ctx, ACTION, retired.as_ref(), why, true)
                    .await)
            }
        };
        let survivor = merge
            .as_ref()
            .map(|m| m.survivor.to_string())
            .unwrap_or_default();
        let request = UnmergeRequest {
            merge_id,
            reason: reason.clone(),
            by: ctx.principal.user_id.clone(),
            at: self.clock.now(),
        };
        let mut event = self.event(ctx, ACTION, retired.as_ref().map(NhsNumber::as_str));
        event.outcome = Outcome::Recorded;
        let fallback = mcr_audit::to_append(&event).map_err(|_| GatewayError::AuditUnavailable)?;
        let audit = |c: &UnmergeCounts| {
            let mut e = event.clone();
            e.basis = Some(format!("unmerged-from:{survivor}"));
            e.detail = Some(format!(
                "merge {merge_id} undone: {} link(s), {} care event(s), {} relationship(s) moved back; \
                 {} link(s) made while merged sent to review; objection carried back: {}; reason: {reason}",
                c.links_back,
                c.care_events_back,
                c.relationships_back,
                c.sent_to_review,
                yes_no(c.objection_carried_back),
            ));
            mcr_audit::to_append(&e).unwrap_or_else(|_| fallback.clone())
        };
        let outcome = self
            .store
            .unmerge_patients(&request, &audit, &mcr_audit::chain_hash)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "unmerge not recorded");
                GatewayError::AuditUnavailable
            })?;
        match outcome {
            MergeOutcome::Done(merge, row) => {
                self.after_append(&row).await;
                Ok(merge)
            }
            MergeOutcome::Refused(why) => Err(self
                .merge_refused(ctx, ACTION, retired.as_ref(), why, true)
                .await),
        }
    }

    /// Merges, standing and undone, newest first. Audited (`read-merges`), refusals too.
    pub async fn merges(&self, ctx: &RequestContext) -> Result<Vec<MergeRow>, GatewayError> {
        const ACTION: Action = Action::ReadMerges;
        if let Err(why) = self.may_review_matches(ctx) {
            return Err(self.merge_refused(ctx, ACTION, None, why, false).await);
        }
        let merges = self
            .store
            .merges()
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let mut event = self.event(ctx, ACTION, None);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!("{} merge(s) listed", merges.len()));
        self.audit(&event).await?;
        Ok(merges)
    }

    /// For a number the index does not hold: the standing merge that retired it, if any. The
    /// store unreadable is an error, never "not merged" (which would say "not found").
    pub(crate) async fn merged_away(
        &self,
        nhs: &NhsNumber,
    ) -> Result<Option<MergeRow>, GatewayError> {
        self.store.merged_into(nhs).await.map_err(|e| {
            tracing::error!(error = %e, "merges unreadable: failing closed");
            GatewayError::StoreUnavailable
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A reason is required, and kept short.
fn checked_reason(reason: &str) -> Result<String, String> {
    let r = reason.trim();
    if r.is_empty() {
        return Err("Give the reason: what shows these are one person (or, to undo, two).".into());
    }
    if r.chars().count() > MERGE_REASON_MAX {
        return Err(format!(
            "The reason must be {MERGE_REASON_MAX} characters or fewer."
        ));
    }
    Ok(r.to_owned())
}
