//! The privacy officer's review queue: emergency accesses, self-claimed relationships and the
//! other reviewable actions in a period, each with what followed, any reviews and the anomaly
//! flags; and recording a review, itself an audit record.

use super::{
    clean_text, entry, period, Anomaly, AnomalyFlag, AuditEntry, FollowingView, REVIEWABLE,
};
use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::AuditQuery;
use serde::Serialize;
use std::collections::HashMap;

/// What a privacy officer decided about an emergency access or a self-claimed relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewOutcome {
    Appropriate,
    ReferredForInvestigation,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        self.outcome().as_str()
    }

    /// The outcome the review is audited with.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Appropriate => Outcome::Appropriate,
            Self::ReferredForInvestigation => Outcome::ReferredForInvestigation,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.parse() {
            Ok(Outcome::Appropriate) => Some(Self::Appropriate),
            Ok(Outcome::ReferredForInvestigation) => Some(Self::ReferredForInvestigation),
            _ => None,
        }
    }
}

/// The review queue's search: every field narrows.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub user_id: Option<String>,
    pub patient: Option<NhsNumber>,
    /// The acting user's organisation.
    pub org_code: Option<String>,
    /// Default: the last 30 days.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Also list cases already reviewed.
    pub include_reviewed: bool,
}
/// A review already recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub by_user_id: String,
    pub by_name: String,
    pub outcome: Outcome,
    pub note: String,
}
/// One case: an emergency access or a self-claimed relationship, and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub seq: i64,
    /// One of [`REVIEWABLE`].
    pub kind: Action,
    /// The audited outcome (`deny` for a refused attempt).
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub user_name: String,
    pub role: String,
    pub org_code: String,
    pub org_name: String,
    pub patient: Option<String>,
    /// The emergency reason code, if any.
    pub reason_code: Option<String>,
    /// The reason the user gave.
    pub reason: Option<String>,
    pub correlation_id: String,
    /// The user's views of the patient in the 24 hours after (at most 50).
    pub views_after: Vec<FollowingView>,
    pub reviews: Vec<Review>,
    pub flags: Vec<AnomalyFlag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewQueue {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub items: Vec<ReviewItem>,
    pub anomalies: Vec<Anomaly>,
    /// More cases or views exist than were read; narrow the search.
    pub truncated: bool,
}

const QUEUE_MAX: u32 = 500;

impl Gateway {
    fn must_be_privacy_officer(&self, ctx: &RequestContext) -> Result<(), String> {
        if self.is_privacy_officer(ctx) {
            Ok(())
        } else {
            Err("Only privacy officers of member organisations can review accesses.".into())
        }
    }

    /// The review queue: emergency accesses and self-claimed relationships in the period (not
    /// yet reviewed, unless asked), each with the user's views that followed and any reviews,
    /// and the users flagged by the anomaly checks. Privacy officers only; audited.
    pub async fn review_queue(
        &self,
        ctx: &RequestContext,
        filter: &ReviewFilter,
    ) -> Result<ReviewQueue, GatewayError> {
        const ACTION: Action = Action::ReadReviewQueue;
        let patient = filter.patient.as_ref().map(NhsNumber::as_str);
        if let Err(why) = self.must_be_privacy_officer(ctx) {
            return Err(self.refuse(ctx, ACTION, patient, &why).await);
        }
        let now = self.clock.now();
        let (from, to) = period(
            filter
                .from
                .or(Some(filter.to.unwrap_or(now) - Duration::days(30))),
            filter.to,
            now,
        )?;
        if let Some(nhs) = &filter.patient {
            self.known_patient(nhs).await?;
        }
        let narrowed = AuditQuery {
            patient: patient.map(str::to_owned),
            user_id: filter.user_id.clone(),
            org_code: filter.org_code.clone(),
            actions: REVIEWABLE.map(|a| a.as_str().to_owned()).to_vec(),
            from: Some(from),
            to: Some(to),
            limit: QUEUE_MAX,
            ..AuditQuery::default()
        };
        let alerts: Vec<AuditEntry> = self
            .query(&narrowed)
            .await?
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()?;
        let mut truncated = alerts.len() >= QUEUE_MAX as usize;

        // Reviews are recorded after the case, so those since `from` are enough.
        let review_rows = self
            .query(&AuditQuery {
                actions: vec![Action::ReviewAccess.as_str().into()],
                from: Some(from),
                limit: mcr_store::AUDIT_QUERY_MAX,
                ..AuditQuery::default()
            })
            .await?;
        let mut reviews: HashMap<i64, Vec<Review>> = HashMap::new();
        for r in review_rows.iter().map(entry) {
            let r = r?;
            if let Some(of) = r.event.basis.as_deref().and_then(|b| b.parse::<i64>().ok()) {
                reviews.entry(of).or_default().push(Review {
                    seq: r.seq,
                    at: r.event.at,
                    by_user_id: r.event.user_id,
                    by_name: r.event.user_name,
                    outcome: r.event.outcome,
                    note: r.event.detail.unwrap_or_default(),
                });
            }
        }
        let (anomalies, views_cut) = self.anomalies(filter, patient, from, to).await?;
        truncated |= views_cut;

        let mut items = Vec::new();
        for a in alerts {
            let done = reviews.remove(&a.seq).unwrap_or_default();
            if !done.is_empty() && !filter.include_reviewed {
                continue;
            }
            let ev = a.event;
            let views_after = self.views_after(&ev).await?;
            let flags = anomalies
                .iter()
                .filter(|x| x.user_id == ev.user_id)
                .filter(|x| match &x.flag {
                    AnomalyFlag::SameSurname { patient } => ev.patient.as_ref() == Some(patient),
                    AnomalyFlag::ManyPatientsWithoutRelationship { .. } => true,
                })
                .map(|x| x.flag.clone())
                .collect();
            items.push(ReviewItem {
                seq: a.seq,
                kind: ev.action,
                outcome: ev.outcome,
                at: ev.at,
                user_id: ev.user_id,
                user_name: ev.user_name,
                role: ev.role,
                org_code: ev.org_code,
                org_name: ev.org_name,
                patient: ev.patient,
                reason_code: ev.basis,
                reason: ev.detail,
                correlation_id: ev.correlation_id,
                views_after,
                reviews: done,
                flags,
            });
        }

        let mut event = self.event(ctx, ACTION, patient);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!(
            "{} case(s), {} anomaly flag(s)",
            items.len(),
            anomalies.len()
        ));
        self.audit(&event).await?;
        Ok(ReviewQueue {
            from,
            to,
            items,
            anomalies,
            truncated,
        })
    }

    /// Record a privacy officer's outcome for the emergency access or self-claimed relationship
    /// audited as record `seq`. The review is itself an audit record (`review-access`, its
    /// basis the reviewed record's number); returns its number.
    pub async fn record_review(
        &self,
        ctx: &RequestContext,
        seq: i64,
        outcome: ReviewOutcome,
        note: &str,
    ) -> Result<i64, GatewayError> {
        if let Err(why) = self.must_be_privacy_officer(ctx) {
            return Err(self.refuse(ctx, Action::ReviewAccess, None, &why).await);
        }
        let note = clean_text(note, "note on the review", 2_000)?;
        let rows = self
            .store
            .audit_rows(seq.saturating_sub(1), 1)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        let Some(row) = rows
            .into_iter()
            .next()
            .filter(|r| r.seq == seq && REVIEWABLE.iter().any(|a| a == r.record.action.as_str()))
        else {
            return Err(GatewayError::Invalid(format!(
                "Audit record {seq} is not an access or governance change that is reviewed (emergency access, a self-claimed relationship, permission on the patient's behalf, or an objection override or lift), so it cannot be reviewed."
            )));
        };
        let mut event = self.event(ctx, Action::ReviewAccess, row.record.patient.as_deref());
        event.outcome = outcome.outcome();
        event.basis = Some(seq.to_string());
        event.detail = Some(note);
        Ok(self.audit(&event).await?.seq)
    }
}
