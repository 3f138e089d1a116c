//! The review queue's anomaly flags: a user who reaches many patients without an existing
//! care relationship within an hour, and a user viewing the record of someone of their own
//! family name.

use super::{entry, AuditEntry, ReviewFilter, REVIEWABLE};
use crate::{Gateway, GatewayError};
use chrono::{DateTime, Duration, Utc};
use mcr_audit::Action;
use mcr_audit::AuditEvent;
use mcr_domain::NhsNumber;
use mcr_store::AuditQuery;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Something unusual about a user's accesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "flag", rename_all = "kebab-case")]
pub enum AnomalyFlag {
    /// Within one hour from `from`, the user reached `patients` patients without an existing
    /// care relationship (emergency access or self-claimed relationships).
    ManyPatientsWithoutRelationship {
        from: DateTime<Utc>,
        patients: usize,
    },
    /// The user viewed a patient who shares their surname.
    SameSurname { patient: String },
}

impl AnomalyFlag {
    pub fn describe(&self) -> String {
        match self {
            Self::ManyPatientsWithoutRelationship { from, patients } => format!(
                "Reached {patients} patients without a care relationship within an hour from {}",
                from.format("%-d %B %Y %H:%M")
            ),
            Self::SameSurname { .. } => {
                "Viewed a patient with the same surname as their own".into()
            }
        }
    }
}

/// A user flagged in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub user_id: String,
    pub user_name: String,
    pub org_code: String,
    pub org_name: String,
    pub flag: AnomalyFlag,
    /// Audit records that show it (at most 50).
    pub seqs: Vec<i64>,
}
const VIEWS_SCANNED_MAX: u32 = 50_000;

/// The last word of a person's name, normalised as the index normalises family names.
fn surname(name: &str) -> String {
    name.split_whitespace()
        .last()
        .map(mcr_domain::demographics::normalise_name)
        .unwrap_or_default()
}

/// Users who reached more than `limit` distinct patients within any hour, from their
/// alerts (oldest first per user): (user, window start, patients, seqs).
fn many_patients(
    alerts: &[AuditEntry],
    limit: usize,
) -> Vec<(String, DateTime<Utc>, usize, Vec<i64>)> {
    let mut by_user: BTreeMap<&str, Vec<&AuditEntry>> = BTreeMap::new();
    for a in alerts {
        by_user.entry(a.event.user_id.as_str()).or_default().push(a);
    }
    let mut out = Vec::new();
    for (user, mut list) in by_user {
        list.sort_by_key(|a| (a.event.at, a.seq));
        let mut best: Option<(DateTime<Utc>, usize, Vec<i64>)> = None;
        let mut start = 0;
        for end in 0..list.len() {
            while list[end].event.at - list[start].event.at > Duration::hours(1) {
                start += 1;
            }
            let window = &list[start..=end];
            let patients: BTreeSet<_> = window
                .iter()
                .filter_map(|a| a.event.patient.as_deref())
                .collect();
            if patients.len() > limit && best.as_ref().is_none_or(|b| patients.len() > b.1) {
                best = Some((
                    list[start].event.at,
                    patients.len(),
                    window.iter().map(|a| a.seq).take(50).collect(),
                ));
            }
        }
        if let Some((from, n, seqs)) = best {
            out.push((user.to_owned(), from, n, seqs));
        }
    }
    out
}
impl Gateway {
    /// The anomalies over everyone in the period (not only the cases `filter` narrows to), and
    /// whether the views scanned for them were cut at [`VIEWS_SCANNED_MAX`].
    pub(super) async fn anomalies(
        &self,
        filter: &ReviewFilter,
        patient: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<Anomaly>, bool), GatewayError> {
        let all_alerts: Vec<AuditEntry> = self
            .query(&AuditQuery {
                actions: REVIEWABLE.map(|a| a.as_str().to_owned()).to_vec(),
                from: Some(from),
                to: Some(to),
                limit: VIEWS_SCANNED_MAX,
                ..AuditQuery::default()
            })
            .await?
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()?;
        let mut anomalies = Vec::new();
        let names: HashMap<&str, &AuditEvent> = all_alerts
            .iter()
            .map(|a| (a.event.user_id.as_str(), &a.event))
            .collect();
        for (user, start, n, seqs) in
            many_patients(&all_alerts, self.audit_config.many_patients_per_hour)
        {
            if let Some(ev) = names.get(user.as_str()) {
                anomalies.push(Anomaly {
                    user_id: user.clone(),
                    user_name: ev.user_name.clone(),
                    org_code: ev.org_code.clone(),
                    org_name: ev.org_name.clone(),
                    flag: AnomalyFlag::ManyPatientsWithoutRelationship {
                        from: start,
                        patients: n,
                    },
                    seqs,
                });
            }
        }
        let views = self
            .query(&AuditQuery {
                actions: vec![Action::ViewRecord.as_str().into()],
                outcomes: vec!["permit".into()],
                user_id: filter.user_id.clone(),
                org_code: filter.org_code.clone(),
                patient: patient.map(str::to_owned),
                from: Some(from),
                to: Some(to),
                limit: VIEWS_SCANNED_MAX,
                ..AuditQuery::default()
            })
            .await?;
        let truncated = views.len() >= VIEWS_SCANNED_MAX as usize;
        let mut family: HashMap<String, Option<String>> = HashMap::new();
        let mut same: BTreeMap<(String, String), Anomaly> = BTreeMap::new();
        for v in &views {
            let (Some(nhs), Ok(ev)) = (
                v.record.patient.as_deref(),
                serde_json::from_str::<AuditEvent>(&v.record.payload),
            ) else {
                continue;
            };
            let own = surname(&ev.user_name);
            if own.is_empty() {
                continue;
            }
            if !family.contains_key(nhs) {
                let f = match NhsNumber::parse(nhs) {
                    Ok(n) => self
                        .store
                        .patient(&n)
                        .await
                        .map_err(|_| GatewayError::StoreUnavailable)?
                        .map(|p| mcr_domain::demographics::normalise_name(&p.family)),
                    Err(_) => None,
                };
                family.insert(nhs.to_owned(), f);
            }
            if family.get(nhs).and_then(Option::as_deref) == Some(own.as_str()) {
                let a = same
                    .entry((ev.user_id.clone(), nhs.to_owned()))
                    .or_insert_with(|| Anomaly {
                        user_id: ev.user_id.clone(),
                        user_name: ev.user_name.clone(),
                        org_code: ev.org_code.clone(),
                        org_name: ev.org_name.clone(),
                        flag: AnomalyFlag::SameSurname {
                            patient: nhs.to_owned(),
                        },
                        seqs: Vec::new(),
                    });
                if a.seqs.len() < 50 {
                    a.seqs.push(v.seq);
                }
            }
        }
        anomalies.extend(same.into_values());
        Ok((anomalies, truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_audit::Outcome;

    fn alert(seq: i64, user: &str, patient: &str, minute: i64) -> AuditEntry {
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        AuditEntry {
            seq,
            event: AuditEvent {
                at: t0 + Duration::minutes(minute),
                correlation_id: String::new(),
                system: None,
                user_id: user.into(),
                user_name: "Dr Test User".into(),
                role: "clinician".into(),
                org_code: "RWH".into(),
                org_name: "Trust".into(),
                patient: Some(patient.into()),
                purpose: "directcare".into(),
                action: Action::EmergencyAccess,
                outcome: Outcome::Alert,
                basis: None,
                detail: None,
                sources: Vec::new(),
                role_profile_id: None,
            },
        }
    }

    #[test]
    fn many_patients_in_an_hour_is_flagged_only_above_the_limit() {
        let within: Vec<_> = (0..21)
            .map(|i| alert(i, "u1", &format!("p{i}"), i))
            .collect();
        let flagged = many_patients(&within, 20);
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].2, 21);
        // The same 21 spread over two hours: never more than 20 in one hour.
        let spread: Vec<_> = (0..21)
            .map(|i| alert(i, "u1", &format!("p{i}"), i * 6))
            .collect();
        assert!(many_patients(&spread, 20).is_empty());
        // One patient many times is one patient.
        let same: Vec<_> = (0..30).map(|i| alert(i, "u1", "p1", i)).collect();
        assert!(many_patients(&same, 20).is_empty());
    }

    #[test]
    fn surnames_compare_normalised() {
        assert_eq!(surname("Dr Asha Patel"), "PATEL");
        assert_eq!(
            surname("Siobhan O'Murphy"),
            mcr_domain::demographics::normalise_name("O'Murphy")
        );
    }
}
