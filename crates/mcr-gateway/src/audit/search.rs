//! The FHIR `AuditEvent` search: privacy officers see every record, staff of a source
//! organisation the accesses that touched their organisation's data, anyone else is refused.

use super::{clean_text, entry, period, AuditEntry, MAX_SEARCH_COUNT};
use crate::{Gateway, GatewayError, RequestContext};
use chrono::{DateTime, Utc};
use mcr_audit::{Action, Outcome};
use mcr_domain::NhsNumber;
use mcr_store::AuditQuery;
use serde::Serialize;
use std::collections::BTreeSet;

/// `GET /fhir/AuditEvent` as the gateway understands it.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    pub patient: Option<NhsNumber>,
    /// The acting user's id.
    pub agent: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Any of these audit outcomes (`permit`, `deny`, …); empty: all.
    pub outcomes: Vec<Outcome>,
    /// At most this many on a page (0: 100; at most [`MAX_SEARCH_COUNT`]).
    pub count: u32,
    /// Only the record with this sequence number (`_id`).
    pub id: Option<i64>,
    /// The page of records just older than this one (a `next` link).
    pub before: Option<i64>,
    /// The page of records just newer than this one (a `previous` link).
    pub after: Option<i64>,
}

/// Whose accesses a search could see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditScope {
    /// A privacy officer: every record.
    All,
    /// Staff of a source organisation: the accesses that touched its data.
    SourceOrganisation(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub scope: AuditScope,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// One page, newest first.
    pub entries: Vec<AuditEntry>,
    /// Whether records older than this page's last match too (there is a next page).
    pub older: bool,
    /// Whether records newer than this page's first match too (there is a previous page).
    pub newer: bool,
}

impl Gateway {
    fn source_orgs(&self) -> BTreeSet<String> {
        self.federation
            .sources()
            .map(|s| s.config().organisation.code.to_string())
            .collect()
    }
    /// Search the trail (`GET /fhir/AuditEvent`). Privacy officers see every record; staff of
    /// a source organisation see the accesses that touched their organisation's data; anyone
    /// else is refused. The search is audited (`search-audit`), refusals too.
    pub async fn search_audit(
        &self,
        ctx: &RequestContext,
        search: &AuditSearch,
    ) -> Result<AuditPage, GatewayError> {
        const ACTION: Action = Action::SearchAudit;
        let patient = search.patient.as_ref().map(NhsNumber::as_str);
        let scope = if self.is_privacy_officer(ctx) {
            AuditScope::All
        } else {
            let own = ctx.principal.organisation.code.to_string();
            let org = &ctx.principal.organisation;
            if !self.source_orgs().contains(&own) || !org.member || org.suspended {
                let why = "Only privacy officers, and staff of organisations whose systems share data, can read the audit trail.";
                return Err(self.refuse(ctx, ACTION, patient, why).await);
            }
            AuditScope::SourceOrganisation(own)
        };
        let (from, to) = period(search.from, search.to, self.clock.now())?;
        if let Some(agent) = &search.agent {
            clean_text(agent, "user id", 200)?;
        }
        if let Some(nhs) = &search.patient {
            self.known_patient(nhs).await?;
        }
        let query = AuditQuery {
            patient: patient.map(str::to_owned),
            user_id: search.agent.clone(),
            source_org: match &scope {
                AuditScope::All => None,
                AuditScope::SourceOrganisation(code) => Some(code.clone()),
            },
            outcomes: search
                .outcomes
                .iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
            from: Some(from),
            to: Some(to),
            seq: search.id,
            before_seq: search.before,
            after_seq: search.after,
            // One more than a page: whether there is another page beyond it.
            limit: page_size(search.count) + 1,
            ..AuditQuery::default()
        };
        let mut rows = self.query(&query).await?;
        let beyond = rows.len() > page_size(search.count) as usize;
        if beyond {
            if search.after.is_some() {
                // Read upwards from `after`: the extra one is the newest.
                rows.remove(0);
            } else {
                rows.truncate(page_size(search.count) as usize);
            }
        }
        // A page reached by a link has the page it came from on its other side.
        let (older, newer) = if search.after.is_some() {
            (true, beyond)
        } else {
            (beyond, search.before.is_some())
        };
        let entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let mut event = self.event(ctx, ACTION, patient);
        event.outcome = Outcome::Permit;
        event.detail = Some(format!(
            "audit search{}{}{}, {} to {}: {} record(s)",
            match &scope {
                AuditScope::All => String::new(),
                AuditScope::SourceOrganisation(code) => format!(" of accesses to {code} data"),
            },
            search
                .agent
                .as_ref()
                .map(|a| format!(", user {a}"))
                .unwrap_or_default(),
            if search.outcomes.is_empty() {
                String::new()
            } else {
                format!(
                    ", outcome {}",
                    search
                        .outcomes
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join("/")
                )
            },
            from.format("%Y-%m-%d"),
            to.format("%Y-%m-%d"),
            entries.len()
        ));
        self.audit(&event).await?;
        Ok(AuditPage {
            scope,
            from,
            to,
            entries,
            older,
            newer,
        })
    }
}

/// Entries on one page of an audit search asking for `count` (0: the default).
fn page_size(count: u32) -> u32 {
    if count == 0 {
        100
    } else {
        count.min(MAX_SEARCH_COUNT)
    }
}
