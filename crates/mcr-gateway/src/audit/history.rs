//! A patient's "who viewed my record": each view of the last 12 months in the words the
//! patient sees, and its downloads (CSV, JSON).

use super::{entry, HISTORY_DAYS};
use crate::{Gateway, GatewayError};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::AuditEvent;
use mcr_audit::{Action, Outcome};
use mcr_domain::{NhsNumber, Role};
use mcr_store::AuditQuery;
use serde::Serialize;

/// One view of a patient's record, in the words the patient sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLine {
    pub at: DateTime<Utc>,
    pub organisation: String,
    pub org_code: String,
    /// The viewer's role in plain words ("Doctor", "Nurse", …).
    pub role: String,
    /// Why they could look, in a few words ("With your permission", "Emergency access", …).
    pub reason: String,
    /// The full sentence recorded with the view.
    pub explanation: String,
}

/// "Who viewed my record": each view of the last 12 months, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AccessHistory {
    pub nhs_number: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub views: Vec<AccessLine>,
}

/// A file to download.
#[derive(Debug, Clone)]
pub struct Download {
    pub content_type: &'static str,
    pub filename: String,
    pub body: String,
}

/// The formats a patient can download their access history in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFormat {
    Csv,
    Json,
}

impl DownloadFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A few words for a view's basis code.
pub fn reason_words(basis: Option<&str>) -> &'static str {
    match basis {
        Some("relationship-and-permission") => "Involved in your care, with permission given",
        Some("legal-basis") => "Involved in your care (shared for direct care without asking)",
        Some("emergency") => {
            "Emergency access (you could not be asked); reviewed by a privacy officer"
        }
        Some("objection-overridden") => {
            "Your opt-out was overridden (safeguarding or a legal duty)"
        }
        _ => "Direct care",
    }
}

fn csv_field(s: &str) -> String {
    // Quote everything; a leading =, +, - or @ would be read as a formula by spreadsheets.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl AccessHistory {
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("time,organisation,organisation_code,role,reason,explanation\r\n");
        for v in &self.views {
            let fields = [
                v.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                v.organisation.clone(),
                v.org_code.clone(),
                v.role.clone(),
                v.reason.clone(),
                v.explanation.clone(),
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push_str("\r\n");
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The history as a file for the patient to keep.
    pub fn download(&self, format: DownloadFormat) -> Download {
        let stem = format!("my-care-record-access-{}", self.until.format("%Y-%m-%d"));
        match format {
            DownloadFormat::Csv => Download {
                content_type: "text/csv; charset=utf-8",
                filename: format!("{stem}.csv"),
                body: self.to_csv(),
            },
            DownloadFormat::Json => Download {
                content_type: "application/json",
                filename: format!("{stem}.json"),
                body: self.to_json(),
            },
        }
    }
}

impl Gateway {
    /// Every view of this patient's record since `since` (at most the last 12 months), for the
    /// patient themself once signed in. Audited as the patient reading their own history.
    pub async fn access_history(
        &self,
        nhs: &NhsNumber,
        since: Option<DateTime<Utc>>,
    ) -> Result<AccessHistory, GatewayError> {
        let until = self.clock.now();
        let earliest = until - Duration::days(HISTORY_DAYS);
        let since = since.map_or(earliest, |s| s.max(earliest));
        self.known_patient(nhs).await?;
        let rows = self
            .query(&AuditQuery {
                patient: Some(nhs.as_str().to_owned()),
                actions: vec![Action::ViewRecord.as_str().into()],
                outcomes: vec!["permit".into()],
                from: Some(since),
                to: Some(until),
                limit: mcr_store::AUDIT_QUERY_MAX,
                ..AuditQuery::default()
            })
            .await?;
        let views = rows
            .iter()
            .map(entry)
            .map(|e| {
                e.map(|e| {
                    let ev = e.event;
                    AccessLine {
                        at: ev.at,
                        organisation: ev.org_name,
                        org_code: ev.org_code,
                        role: ev
                            .role
                            .parse::<Role>()
                            .map_or(ev.role.clone(), |r| r.label().to_owned()),
                        reason: reason_words(ev.basis.as_deref()).to_owned(),
                        explanation: ev.detail.unwrap_or_default(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let event = AuditEvent {
            at: until,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            system: None,
            user_id: "patient".into(),
            user_name: "the patient".into(),
            role: "patient".into(),
            org_code: "PUBLIC".into(),
            org_name: "My Care Record public site".into(),
            patient: Some(nhs.as_str().to_owned()),
            purpose: "patient-request".into(),
            action: Action::ReadAccessHistory,
            outcome: Outcome::Permit,
            basis: None,
            detail: Some(format!("{} view(s) listed", views.len())),
            sources: Vec::new(),
            role_profile_id: None,
        };
        self.audit(&event).await?;
        Ok(AccessHistory {
            nhs_number: nhs.as_str().to_owned(),
            since,
            until,
            views,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let h = AccessHistory {
            nhs_number: "9990000018".into(),
            since: now,
            until: now,
            views: vec![AccessLine {
                at: now,
                organisation: "=HYPERLINK(\"x\")".into(),
                org_code: "RWH".into(),
                role: "Doctor".into(),
                reason: "Direct care".into(),
                explanation: "a, \"b\"".into(),
            }],
        };
        let csv = h.to_csv();
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
        assert!(csv.contains("\"a, \"\"b\"\"\""), "{csv}");
    }
}
