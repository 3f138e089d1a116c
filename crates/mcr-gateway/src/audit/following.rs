//! The views that followed a case under review: the same user's views of the same patient in
//! the 24 hours after it.

use super::entry;
use crate::{Gateway, GatewayError};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::{Action, AuditEvent};
use mcr_store::AuditQuery;
use serde::Serialize;

/// A view that followed the access under review.
#[derive(Debug, Clone, Serialize)]
pub struct FollowingView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub outcome: mcr_audit::Outcome,
    pub basis: Option<String>,
}

impl Gateway {
    /// The views `ev`'s user made of `ev`'s patient in the 24 hours after it (at most 50).
    pub(super) async fn views_after(
        &self,
        ev: &AuditEvent,
    ) -> Result<Vec<FollowingView>, GatewayError> {
        Ok(match &ev.patient {
            Some(p) => self
                .query(&AuditQuery {
                    user_id: Some(ev.user_id.clone()),
                    patient: Some(p.clone()),
                    actions: vec![Action::ViewRecord.as_str().into()],
                    from: Some(ev.at),
                    to: Some(ev.at + Duration::hours(24)),
                    limit: 50,
                    ..AuditQuery::default()
                })
                .await?
                .iter()
                .map(entry)
                .map(|v| {
                    v.map(|v| FollowingView {
                        seq: v.seq,
                        at: v.event.at,
                        outcome: v.event.outcome,
                        basis: v.event.basis,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        })
    }
}
