//! Care events from the organisations' feeds (an HL7 v2 ADT listener, for one): record,
//! end, cancel, reopen or merge them, each audited; keep what could not be applied for
//! review; list what was kept, for privacy officers; remove, on a timer, events that ended too
//! long ago to make a relationship anywhere (the gateway keeps only what governance needs).
//!
//! A feed is not a user: its audit records name it as `feed:{channel}:{org}` with the
//! administrative role, at the sending organisation. Nothing clinical is recorded: a ward,
//! team or service name at most.

use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Utc};
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Organisation, Principal, Role};
use mcr_store::{CareEventKey, CareEventRow, HeldMessage};

/// How often events too old to count are removed (and once at start-up).
pub const CARE_EVENT_PRUNE_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(6 * 60 * 60);

/// What a feed says happened to one event of one patient's care at the sending organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareEventAction {
    /// Start or update an event (admit, transfer, attendance, pre-admit, update, register).
    Record {
        /// `admission`, `encounter`, `episode`, `referral`, `appointment`,
        /// `case-allocation` or `gp-registration`.
        kind: &'static str,
        ward: Option<String>,
        team: Option<String>,
        service: Option<String>,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    },
    /// The event ended (a discharge). An event not yet held is recorded from `start`.
    End {
        kind: &'static str,
        ward: Option<String>,
        service: Option<String>,
        start: Option<DateTime<Utc>>,
        end: DateTime<Utc>,
    },
    /// The event never happened (a cancelled admission): removed.
    Cancel,
    /// The end never happened (a cancelled discharge): open again.
    Reopen,
    /// Every event of `from` belongs to the notice's patient (a merge).
    Merge { from: NhsNumber },
    /// A person added or updated (no care event): audited only, for a patient the index may
    /// not hold yet.
    Noted,
}

/// One message's worth of change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareEventNotice {
    /// The patient (for a merge: the surviving one).
    pub nhs_number: NhsNumber,
    /// The sending organisation, as configured for the feed.
    pub org: Organisation,
    /// Which feed: `adt`, `fhir`, `gp-registration`.
    pub origin: &'static str,
    /// The source's own id for the event (a visit number).
    pub source_event_id: String,
    pub action: CareEventAction,
    /// What the feed called it, for the audit record (e.g. `ADT^A01`).
    pub message_type: String,
}

/// Why a notice was not applied: said to the sender, and the message kept for review.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CareEventRefusal {
    #[error("no patient with that NHS number is known to My Care Record")]
    UnknownPatient,
    #[error("no event with that visit number is held for this organisation")]
    NoSuchEvent,
    #[error("the event ends before it starts")]
    EndsBeforeStart,
    #[error("the gateway could not record it just now; send it again")]
    Unavailable,
}

impl Gateway {
    /// The context a feed's changes are audited under.
    pub fn feed_context(
        &self,
        origin: &str,
        org: &Organisation,
        correlation: &str,
    ) -> RequestContext {
        RequestContext {
            principal: Principal {
                role_profile: None,
                user_id: format!("feed:{origin}:{}", org.code),
                name: format!("{origin} feed from {}", org.name),
                role: Role::Admin,
                organisation: org.clone(),
            },
            correlation_id: correlation.to_owned(),
            system: None,
        }
    }

    /// Apply one feed notice and audit it. Returns what was done (`recorded`, `ended`,
    /// `cancelled`, `reopened`, `merged`, `noted`).
    pub async fn record_care_event(
        &self,
        notice: &CareEventNotice,
        correlation: &str,
    ) -> Result<&'static str, CareEventRefusal> {
        let store = &self.store;
        if notice.action != CareEventAction::Noted {
            let known = store
                .patient(&notice.nhs_number)
                .await
                .map_err(|_| CareEventRefusal::Unavailable)?;
            if known.is_none() {
                return Err(CareEventRefusal::UnknownPatient);
            }
        }
        let org_code = notice.org.code.to_string();
        let key = CareEventKey {
            origin: notice.origin,
            org_code: &org_code,
            source_event_id: &notice.source_event_id,
        };
        let now = self.clock.now();
        let row = |kind: &str, ward, team, service, start, end| CareEventRow {
            nhs_number: notice.nhs_number.clone(),
            org_code: org_code.clone(),
            kind: kind.to_owned(),
            ward,
            team,
            service,
            start,
            end,
            origin: notice.origin.to_owned(),
            source_event_id: notice.source_event_id.clone(),
            received_at: now,
        };
        let unavailable = |_| CareEventRefusal::Unavailable;
        // A new or changed event is written in one transaction with its audit record.
        let mut write = None;
        let outcome = match &notice.action {
            CareEventAction::Record {
                kind,
                ward,
                team,
                service,
                start,
                end,
            } => {
                if end.is_some_and(|e| e < *start) {
                    return Err(CareEventRefusal::EndsBeforeStart);
                }
                write = Some(row(
                    kind,
                    ward.clone(),
                    team.clone(),
                    service.clone(),
                    *start,
                    *end,
                ));
                Outcome::Recorded
            }
            CareEventAction::End {
                kind,
                ward,
                service,
                start,
                end,
            } => {
                let held = store.care_event(key).await.map_err(unavailable)?;
                let e = match held {
                    Some(mut e) => {
                        e.end = Some(*end);
                        e.received_at = now;
                        e
                    }
                    None => row(
                        kind,
                        ward.clone(),
                        None,
                        service.clone(),
                        start.unwrap_or(*end),
                        Some(*end),
                    ),
                };
                if e.end.is_some_and(|x| x < e.start) {
                    return Err(CareEventRefusal::EndsBeforeStart);
                }
                write = Some(e);
                Outcome::Ended
            }
            CareEventAction::Cancel => {
                if !store.cancel_care_event(key).await.map_err(unavailable)? {
                    return Err(CareEventRefusal::NoSuchEvent);
                }
                Outcome::Cancelled
            }
            CareEventAction::Reopen => {
                if !store
                    .set_care_event_end(key, None)
                    .await
                    .map_err(unavailable)?
                {
                    return Err(CareEventRefusal::NoSuchEvent);
                }
                Outcome::Reopened
            }
            CareEventAction::Merge { from } => {
                store
                    .merge_care_events(from, &notice.nhs_number)
                    .await
                    .map_err(unavailable)?;
                Outcome::Merged
            }
            CareEventAction::Noted => Outcome::Noted,
        };
        let ctx = self.feed_context(notice.origin, &notice.org, correlation);
        let mut event = self.event(&ctx, Action::CareEvent, Some(notice.nhs_number.as_str()));
        event.outcome = outcome;
        event.detail = Some(format!(
            "{} {} from {}",
            notice.origin, notice.message_type, notice.org.code
        ));
        match write {
            Some(e) => {
                let change = mcr_store::GovernanceChange::CareEvent(e);
                let row = mcr_audit::record_change(self.store.as_ref(), &change, &event)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "care event not recorded");
                        CareEventRefusal::Unavailable
                    })?;
                self.after_append(&row).await;
            }
            None => {
                self.audit(&event)
                    .await
                    .map_err(|_| CareEventRefusal::Unavailable)?;
            }
        }
        Ok(outcome.as_str())
    }

    /// Keep a message that was not applied, for review. Counted, and logged without content.
    pub async fn hold_feed_message(&self, message: &HeldMessage) -> Result<(), GatewayError> {
        tracing::warn!(
            channel = %message.channel, ack = %message.ack_code, reason = %message.reason,
            "feed message held for review"
        );
        self.store.hold_message(message).await.map_err(|e| {
            tracing::error!(error = %e, "a feed message could not be kept for review");
            GatewayError::StoreUnavailable
        })
    }

    /// Messages the feeds sent that were not applied, newest first: for privacy officers
    /// (data quality staff). Audited.
    pub async fn held_messages(
        &self,
        ctx: &RequestContext,
        limit: u32,
    ) -> Result<Vec<HeldMessage>, GatewayError> {
        let mut event = self.event(ctx, Action::ListHeldMessages, None);
        if ctx.principal.role != Role::PrivacyOfficer {
            event.outcome = Outcome::Deny;
            self.audit(&event).await?;
            return Err(GatewayError::Forbidden(
                "Only privacy officers can see the messages held for review.".into(),
            ));
        }
        let held = self
            .store
            .held_messages(limit)
            .await
            .map_err(|_| GatewayError::StoreUnavailable)?;
        event.outcome = Outcome::Permit;
        event.detail = Some(format!("{} held messages listed", held.len()));
        self.audit(&event).await?;
        Ok(held)
    }
}

impl Gateway {
    /// Remove care events that ended longer ago than the longest relationship window (and a
    /// day more): they no longer make a relationship anywhere, and the gateway keeps only what
    /// governance needs. The removal is audited with its count; open events are kept.
    pub async fn prune_care_events(&self) -> Result<u64, GatewayError> {
        let days = self.policy.longest_relationship_window_days();
        let cutoff = self.clock.now() - chrono::Duration::days(i64::from(days) + 1);
        let removed = self.store.prune_care_events(cutoff).await.map_err(|e| {
            tracing::error!(error = %e, "stale care events could not be removed");
            GatewayError::StoreUnavailable
        })?;
        if removed > 0 {
            let mut event = crate::audit::system_event(self, Action::PruneCareEvents);
            event.outcome = Outcome::Removed;
            event.detail = Some(format!(
                "{removed} care event(s) that ended before {} removed: older than the longest relationship window ({days} days), they no longer make a relationship",
                cutoff.format("%-d %b %Y")
            ));
            self.audit(&event).await?;
        }
        Ok(removed)
    }

    /// Remove stale care events now and then every `interval`, until the task is aborted. A
    /// failure is logged (and tried again at the next tick), never raised.
    pub fn spawn_care_event_pruning(
        &self,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        let interval = interval.max(std::time::Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Ok(n) = gateway.prune_care_events().await {
                    tracing::info!(removed = n, "stale care events pruned");
                }
            }
        })
    }
}
