//! Care-event metadata read from FHIR sources with the index sync, and GP registrations from
//! the GP systems' `Patient`s: when a patient's care at an organisation started and ended.
//!
//! Only status, period, organisation, ward and team are kept: never a reason, a diagnosis, a
//! type code or free text. An event whose patient the index does not hold is counted, not
//! kept; an `entered-in-error` or `cancelled` one removes what an earlier sync kept.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mcr_domain::{OdsCode, OrgKind, SourceId};
use mcr_store::CareEventRow;
use serde_json::Value;

/// The care-event types read from a source, when its configuration lists them.
pub const CARE_EVENT_TYPES: [&str; 5] = [
    "Encounter",
    "EpisodeOfCare",
    "ServiceRequest",
    "Appointment",
    "CareTeam",
];

/// The extension that carries a GP registration's period on a GP system's `Patient`
/// (GP Connect's registration details).
pub const REGISTRATION_DETAILS: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-CareConnect-GPC-RegistrationDetails-1";

/// What one care-event resource says, before its patient is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent {
    /// Keep (or replace) this event, for the patient with this local id.
    Keep { local_id: String, row: EventParts },
    /// The source withdrew it: remove what was kept under this id.
    Withdrawn { source_event_id: String },
    /// Not a care event that counts (e.g. a planned encounter, a finished referral), or
    /// unreadable.
    Skip,
}

/// A care event's fields, before its NHS number is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventParts {
    pub org_code: String,
    pub kind: &'static str,
    pub ward: Option<String>,
    pub team: Option<String>,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub source_event_id: String,
}

impl EventParts {
    pub fn row(self, nhs: mcr_domain::NhsNumber, received_at: DateTime<Utc>) -> CareEventRow {
        CareEventRow {
            nhs_number: nhs,
            org_code: self.org_code,
            kind: self.kind.to_owned(),
            ward: self.ward,
            team: self.team,
            service: None,
            start: self.start,
            end: self.end,
            origin: "fhir".to_owned(),
            source_event_id: self.source_event_id,
            received_at,
        }
    }
}

fn clip(s: &str) -> String {
    s.trim().chars().take(80).collect()
}

/// A FHIR `date` or `dateTime`: a bare date is its midnight UTC.
pub fn instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN).and_utc())
}

fn period(r: &Value, key: &str) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let p = r.get(key)?;
    let start = instant(p.get("start")?.as_str()?)?;
    let end = match p.get("end").and_then(Value::as_str) {
        Some(e) => Some(instant(e)?),
        None => None,
    };
    Some((start, end))
}

/// The local id of a `Patient/{id}` reference.
fn patient_ref(r: Option<&Value>) -> Option<String> {
    let reference = r?.get("reference")?.as_str()?;
    let id = reference.rsplit_once("Patient/")?.1;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
}

/// An organisation reference's ODS code, if it carries one.
fn org_ref(r: Option<&Value>) -> Option<String> {
    let code = r?.get("identifier")?.get("value")?.as_str()?;
    OdsCode::parse(code).ok().map(|c| c.to_string())
}

/// Read one care-event resource from `source` (whose organisation is `org` of `org_kind`).
pub fn read_event(source: &SourceId, org: &OdsCode, org_kind: OrgKind, r: &Value) -> ReadEvent {
    let (Some(rt), Some(id)) = (mcr_fhir::resource_type(r), mcr_fhir::resource_id(r)) else {
        return ReadEvent::Skip;
    };
    let source_event_id = format!("{source}/{rt}/{id}");
    let status = r.get("status").and_then(Value::as_str).unwrap_or_default();
    if matches!(
        status,
        "entered-in-error" | "cancelled" | "revoked" | "noshow"
    ) {
        return ReadEvent::Withdrawn { source_event_id };
    }
    let at = |key: &str| org_ref(r.get(key)).unwrap_or_else(|| org.to_string());
    let parts = match rt {
        "Encounter" => {
            let open = matches!(status, "in-progress" | "arrived" | "triaged" | "onleave");
            if !open && status != "finished" {
                return ReadEvent::Skip;
            }
            let Some((start, end)) = period(r, "period") else {
                return ReadEvent::Skip;
            };
            let inpatient = r
                .get("class")
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str)
                == Some("IMP");
            let ward = r
                .get("location")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .and_then(|l| l.get("location")?.get("display")?.as_str())
                .map(clip);
            (
                patient_ref(r.get("subject")),
                EventParts {
                    org_code: at("serviceProvider"),
                    kind: if inpatient { "admission" } else { "encounter" },
                    ward,
                    team: None,
                    start,
                    end: if open { None } else { end.or(Some(start)) },
                    source_event_id,
                },
            )
        }
        "EpisodeOfCare" => {
            let open = matches!(status, "active" | "waitlist" | "onhold");
            if !open && status != "finished" {
                return ReadEvent::Skip;
            }
            let Some((start, end)) = period(r, "period") else {
                return ReadEvent::Skip;
            };
            let team = r
                .get("team")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(|t| t.get("display")?.as_str())
                .map(clip);
            let kind = if org_kind == OrgKind::LocalAuthoritySocialCare {
                "case-allocation"
            } else {
                "episode"
            };
            (
                patient_ref(r.get("patient")),
                EventParts {
                    org_code: at("managingOrganization"),
                    kind,
                    ward: None,
                    team,
                    start,
                    end: if open { None } else { end.or(Some(start)) },
                    source_event_id,
                },
            )
        }
        "ServiceRequest" => {
            // A referral counts while it is active.
            if status != "active" {
                return ReadEvent::Withdrawn { source_event_id };
            }
            let Some(start) = r
                .get("authoredOn")
                .and_then(Value::as_str)
                .and_then(instant)
            else {
                return ReadEvent::Skip;
            };
            (
                patient_ref(r.get("subject")),
                EventParts {
                    org_code: org.to_string(),
                    kind: "referral",
                    ward: None,
                    team: None,
                    start,
                    end: None,
                    source_event_id,
                },
            )
        }
        "Appointment" => {
            if !matches!(status, "booked" | "pending" | "arrived" | "checked-in") {
                return ReadEvent::Withdrawn { source_event_id };
            }
            let Some(start) = r.get("start").and_then(Value::as_str).and_then(instant) else {
                return ReadEvent::Skip;
            };
            let end = r.get("end").and_then(Value::as_str).and_then(instant);
            let patient = r
                .get("participant")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|p| patient_ref(p.get("actor")));
            (
                patient,
                EventParts {
                    org_code: org.to_string(),
                    kind: "appointment",
                    ward: None,
                    team: None,
                    start,
                    end,
                    source_event_id,
                },
            )
        }
        "CareTeam" => {
            if status != "active" {
                return ReadEvent::Withdrawn { source_event_id };
            }
            let Some((start, end)) = period(r, "period") else {
                return ReadEvent::Skip;
            };
            let team = r.get("name").and_then(Value::as_str).map(clip);
            (
                patient_ref(r.get("subject")),
                EventParts {
                    org_code: at("managingOrganization"),
                    kind: "episode",
                    ward: None,
                    team,
                    start,
                    end,
                    source_event_id,
                },
            )
        }
        _ => return ReadEvent::Skip,
    };
    match parts {
        (Some(local_id), row) => ReadEvent::Keep { local_id, row },
        (None, _) => ReadEvent::Skip,
    }
}

/// A GP system `Patient`'s registration: the practice and the registration period, when the
/// resource gives both.
pub fn registration(source: &SourceId, r: &Value, practice: &str) -> Option<EventParts> {
    let details = r
        .get("extension")
        .and_then(Value::as_array)?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(REGISTRATION_DETAILS))?;
    let period = details
        .get("extension")
        .and_then(Value::as_array)?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some("registrationPeriod"))?;
    let (start, end) = self::period(period, "valuePeriod")?;
    let id = mcr_fhir::resource_id(r)?;
    Some(EventParts {
        org_code: practice.to_owned(),
        kind: "gp-registration",
        ward: None,
        team: None,
        start,
        end,
        source_event_id: format!("{source}/Patient/{id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src() -> (SourceId, OdsCode) {
        (
            SourceId::parse("acute").expect("id"),
            OdsCode::parse("RWH").expect("ods"),
        )
    }

    #[test]
    fn an_open_inpatient_encounter_is_an_admission_with_its_ward_and_nothing_clinical() {
        let (s, o) = src();
        let r = json!({"resourceType": "Encounter", "id": "e1", "status": "in-progress",
            "class": {"code": "IMP"}, "subject": {"reference": "Patient/p1"},
            "reasonCode": [{"text": "chest pain"}],
            "period": {"start": "2026-11-30T10:00:00Z"},
            "location": [{"location": {"display": "Ward 7B"}}]});
        let ReadEvent::Keep { local_id, row } = read_event(&s, &o, OrgKind::AcuteTrust, &r) else {
            panic!("kept");
        };
        assert_eq!(local_id, "p1");
        assert_eq!(row.kind, "admission");
        assert_eq!(row.end, None);
        assert_eq!(row.ward.as_deref(), Some("Ward 7B"));
        assert_eq!(row.source_event_id, "acute/Encounter/e1");
        assert!(!format!("{row:?}").contains("chest"));
    }

    #[test]
    fn statuses_decide_keep_withdraw_or_skip() {
        let (s, o) = src();
        let enc = |status: &str| {
            json!({"resourceType": "Encounter", "id": "e1", "status": status,
                "subject": {"reference": "Patient/p1"},
                "period": {"start": "2026-11-01", "end": "2026-11-02"}})
        };
        assert!(matches!(
            read_event(&s, &o, OrgKind::AcuteTrust, &enc("finished")),
            ReadEvent::Keep { row, .. } if row.kind == "encounter" && row.end.is_some()
        ));
        assert!(matches!(
            read_event(&s, &o, OrgKind::AcuteTrust, &enc("entered-in-error")),
            ReadEvent::Withdrawn { .. }
        ));
        assert_eq!(
            read_event(&s, &o, OrgKind::AcuteTrust, &enc("planned")),
            ReadEvent::Skip
        );
        let eoc = json!({"resourceType": "EpisodeOfCare", "id": "x", "status": "active",
            "patient": {"reference": "Patient/p2"}, "period": {"start": "2025-01-01"},
            "team": [{"display": "Locality team"}]});
        assert!(matches!(
            read_event(&s, &o, OrgKind::LocalAuthoritySocialCare, &eoc),
            ReadEvent::Keep { row, .. } if row.kind == "case-allocation" && row.end.is_none()
        ));
        assert!(matches!(
            read_event(&s, &o, OrgKind::CommunityTrust, &eoc),
            ReadEvent::Keep { row, .. } if row.kind == "episode"
        ));
    }

    #[test]
    fn a_registration_needs_its_period() {
        let s = SourceId::parse("gp").expect("id");
        let with = json!({"resourceType": "Patient", "id": "g1", "extension": [{
            "url": REGISTRATION_DETAILS,
            "extension": [{"url": "registrationPeriod",
                "valuePeriod": {"start": "2014-01-01", "end": "2026-10-01"}}]}]});
        let reg = registration(&s, &with, "E82001").expect("a registration");
        assert_eq!(reg.kind, "gp-registration");
        assert!(reg.end.is_some(), "deregistered");
        let without = json!({"resourceType": "Patient", "id": "g1"});
        assert_eq!(registration(&s, &without, "E82001"), None);
    }
}
