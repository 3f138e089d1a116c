//! `GET /fhir/AuditEvent`: the audit trail as FHIR R4 AuditEvents in the IHE Basic Audit Log
//! Patterns (BALP) shape, searchable by `patient`, `agent`, `date` (with `ge`/`gt`/`le`/`lt`/
//! `eq` prefixes), `outcome` and `_id`, newest first, in pages of `_count` (default 100, at
//! most 1,000) with `self`, `next` and `previous` links (`_before`/`_after` name the record a
//! page starts beyond). No `total`: counting every match would read the whole period. Who may see what is decided in the gateway
//! (`Gateway::search_audit`); the search itself is audited there.

use super::fhir_json;
use crate::auth::Caller;
use crate::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mcr_domain::{NhsNumber, OdsCode, Role};
use mcr_gateway::{AuditEntry, AuditSearch, Outcome};
use serde_json::{json, Value};

const PARAMS: [&str; 8] = [
    "patient", "agent", "date", "outcome", "_id", "_count", "_before", "_after",
];
const PURPOSE_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/purpose-of-use";
const USER_SYSTEM: &str = "https://mycarerecord.example/Id/user";
const ACTION_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/audit-action";
const ROLE_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/staff-role";

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A `date` value: a day or an instant, with an optional comparison prefix. Returns the
/// bounds it sets (from, to).
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn date_bounds(raw: &str) -> Result<Bounds, ApiError> {
    let (prefix, value) = match raw.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &raw[2..]),
        _ => ("eq", raw),
    };
    let bad = || {
        ApiError::invalid(
            "invalid-date",
            format!(
                "`date={}` is not a date: use YYYY-MM-DD or an instant like 2026-03-02T09:00:00Z, optionally after ge, gt, le, lt or eq.",
                clip(raw)
            ),
        )
        .at("date")
    };
    let (start, end) = if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let start = day.and_time(NaiveTime::MIN).and_utc();
        (
            start,
            start + chrono::Duration::days(1) - chrono::Duration::nanoseconds(1),
        )
    } else {
        let t = DateTime::parse_from_rfc3339(value)
            .map_err(|_| bad())?
            .with_timezone(&Utc);
        (t, t)
    };
    Ok(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end + chrono::Duration::nanoseconds(1)), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start - chrono::Duration::nanoseconds(1))),
        _ => (Some(start), Some(end)),
    })
}

/// An `outcome` search value: an `audit-event-outcome` code (0 success, 4 minor failure, 8
/// serious failure; 12, major failure, finds the serious failures as none are major) or one of
/// our outcome words.
fn outcomes(raw: &str) -> Result<Vec<Outcome>, ApiError> {
    let mut out = Vec::new();
    for code in raw.split(',').map(str::trim) {
        let code_of = match code {
            "12" => "8",
            c => c,
        };
        let coded: Vec<Outcome> = Outcome::ALL
            .iter()
            .copied()
            .filter(|o| o.code() == code_of)
            .collect();
        if !coded.is_empty() {
            out.extend(coded);
            continue;
        }
        match code.parse::<Outcome>() {
            Ok(o) => out.push(o),
            Err(_) => {
                return Err(ApiError::invalid(
                    "invalid-outcome",
                    format!("`outcome={}` is not an outcome: use 0, 4 or 8, or permit, deny, needs-permission, needs-relationship, not-found, error, alert.", clip(code)),
                )
                .at("outcome"))
            }
        }
    }
    Ok(out)
}

pub(crate) fn audit_event(e: &AuditEntry, base_url: &str) -> Value {
    let ev = &e.event;
    let coding = ev.action.coding();
    // The standard subtype when one fits, then our own word for the action.
    let subtype: Vec<Value> = coding
        .subtype
        .iter()
        .map(|s| json!({"system": s.system, "code": s.code}))
        .chain([json!({"system": ACTION_SYSTEM, "code": ev.action})])
        .collect();
    let role_display = ev
        .role
        .parse::<Role>()
        .map_or_else(|_| ev.role.clone(), |r| r.label().to_owned());
    let mut details = vec![json!({"type": "correlation-id", "valueString": ev.correlation_id})];
    if let Some(b) = &ev.basis {
        details.push(json!({"type": "basis", "valueString": b}));
    }
    for s in &ev.sources {
        let mut said = if s.not_tied > 0 {
            format!(
                "{} ({}): {}, {} item(s), {} withheld, {} not tied to this patient",
                s.source, s.org_code, s.status, s.items, s.withheld, s.not_tied
            )
        } else {
            format!(
                "{} ({}): {}, {} item(s), {} withheld",
                s.source, s.org_code, s.status, s.items, s.withheld
            )
        };
        if !s.unsearchable.is_empty() {
            let forms: Vec<&str> = s
                .unsearchable
                .iter()
                .map(|f| match f.as_str() {
                    "identifier" => "NHS number only",
                    "other-server" => "an address outside this region's sources",
                    "contained" => "a contained Patient",
                    other => other,
                })
                .collect();
            let forms = match forms.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} or {last}", rest.join(", "))
                }
                _ => forms.concat(),
            };
            said.push_str(&format!(
                ", its search cannot find items naming the patient by {forms}"
            ));
        }
        details.push(json!({"type": format!("source:{}", s.source), "valueString": said}));
    }
    let mut entity = Vec::new();
    if let Some(nhs) = &ev.patient {
        entity.push(json!({
            "what": {"identifier": {"system": NhsNumber::SYSTEM, "value": nhs}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    let mut query = json!({
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
        "name": ev.action,
        "detail": details
    });
    // No description when there is none: R4 allows no empty strings.
    if let Some(d) = ev.detail.as_deref().filter(|d| !d.is_empty()) {
        query["description"] = json!(d);
    }
    entity.push(query);
    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": e.seq.to_string(),
        "meta": {"profile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"]},
        "type": {"system": coding.event_type.system, "code": coding.event_type.code, "display": coding.event_type.display},
        "subtype": subtype,
        "action": coding.action.code(),
        "recorded": ev.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "outcome": ev.outcome.code(),
        "outcomeDesc": ev.outcome,
        "purposeOfEvent": [{"coding": [
            {"system": PURPOSE_SYSTEM, "code": ev.purpose, "display": if ev.purpose == "directcare" { "Direct care" } else { "Patient request" }},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": if ev.purpose == "directcare" { "TREAT" } else { "PATADMIN" }}
        ]}],
        "agent": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
                "role": [{"coding": [{"system": ROLE_SYSTEM, "code": ev.role, "display": role_display}]}],
                "who": {"identifier": {"system": USER_SYSTEM, "value": ev.user_id}, "display": ev.user_name},
                "requestor": true
            },
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV", "display": "healthcare provider"}]},
                "who": {"identifier": {"system": OdsCode::SYSTEM, "value": ev.org_code}, "display": ev.org_name},
                "requestor": false
            },
            {
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152", "display": "Destination Role ID"}]},
                "who": {"display": "My Care Record gateway"},
                "requestor": false,
                "network": {"address": base_url, "type": "5"}
            }
        ],
        "source": {
            "site": "My Care Record",
            "observer": {"display": "My Care Record gateway"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
        },
        "entity": entity
    });
    if let Some(d) = &ev.detail {
        r["outcomeDesc"] = json!(format!("{}: {d}", ev.outcome));
    }
    if let (Some(system), Some(agents)) = (&ev.system, r["agent"].as_array_mut()) {
        // The system the user acted through (SMART backend services): BALP's client agent.
        agents.push(json!({
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": SYSTEM_CLIENT_SYSTEM, "value": system}},
            "requestor": false
        }));
    }
    r
}

/// Identifiers of the systems registered for backend services (their `client_id`).
const SYSTEM_CLIENT_SYSTEM: &str = "https://mycarerecord.example/Id/system-client";

pub(crate) async fn search(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut q = AuditSearch::default();
    for (k, v) in &params {
        match k.as_str() {
            "patient" => {
                let v = v.strip_prefix("Patient/").unwrap_or(v);
                q.patient = Some(super::patient::parse_nhs(v, "patient")?);
            }
            "agent" => q.agent = Some(v.clone()),
            "date" => {
                let (from, to) = date_bounds(v)?;
                if let Some(f) = from {
                    q.from = Some(q.from.map_or(f, |x| x.max(f)));
                }
                if let Some(t) = to {
                    q.to = Some(q.to.map_or(t, |x| x.min(t)));
                }
            }
            "outcome" => q.outcomes.extend(outcomes(v)?),
            "_count" => {
                q.count = v.parse().map_err(|_| {
                    ApiError::invalid("invalid-count", "`_count` must be a whole number.")
                        .at("_count")
                })?;
            }
            "_id" => q.id = Some(seq_param(k, v)?),
            "_before" => q.before = Some(seq_param(k, v)?),
            "_after" => q.after = Some(seq_param(k, v)?),
            other => {
                return Err(ApiError::invalid(
                    "unknown-parameter",
                    format!(
                        "Unknown search parameter `{}`; supported: {}.",
                        clip(other),
                        PARAMS.join(", ")
                    ),
                ))
            }
        }
    }
    let page = state.gateway.search_audit(&ctx, &q).await?;
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|e| json!({"fullUrl": format!("{}/fhir/AuditEvent/{}", state.base_url, e.seq), "resource": audit_event(e, &state.base_url), "search": {"mode": "match"}}))
        .collect();
    // Links keep the search and name where the page starts.
    let link = |relation: &str, at: Option<(&str, i64)>| {
        let mut url = format!("{}/fhir/AuditEvent", state.base_url);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k != "_before" && k != "_after")
        {
            query.append_pair(k, v);
        }
        if let Some((k, seq)) = at {
            query.append_pair(k, &seq.to_string());
        }
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        json!({"relation": relation, "url": url})
    };
    let mut links = vec![link(
        "self",
        params.iter().find_map(|(k, v)| match k.as_str() {
            "_before" => v.parse().ok().map(|s| ("_before", s)),
            "_after" => v.parse().ok().map(|s| ("_after", s)),
            _ => None,
        }),
    )];
    if let (true, Some(last)) = (page.older, page.entries.last()) {
        links.push(link("next", Some(("_before", last.seq))));
    }
    if let (true, Some(first)) = (page.newer, page.entries.first()) {
        links.push(link("previous", Some(("_after", first.seq))));
    }
    let mut body = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
    });
    if !entries.is_empty() {
        body["entry"] = entries.into();
    }
    Ok(fhir_json(StatusCode::OK, &body))
}

/// An audit record's sequence number, as `_id`, `_before` or `_after` give it.
fn seq_param(name: &str, v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>().ok().filter(|s| *s > 0).ok_or_else(|| {
        ApiError::invalid(
            "invalid-id",
            format!(
                "`{name}={}` is not an audit record id: use the id of an AuditEvent (a whole number).",
                clip(v)
            ),
        )
        .at(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_take_prefixes_days_and_instants() {
        let (f, t) = date_bounds("ge2026-03-02").expect("ok");
        assert_eq!(
            f.map(|d| d.to_rfc3339()),
            Some("2026-03-02T00:00:00+00:00".into())
        );
        assert!(t.is_none());
        let (f, t) = date_bounds("le2026-03-02").expect("ok");
        assert!(f.is_none());
        assert!(
            t.expect("to")
                > DateTime::parse_from_rfc3339("2026-03-02T23:59:59Z")
                    .expect("t")
                    .with_timezone(&Utc)
        );
        let (f, t) = date_bounds("2026-03-02T09:00:00Z").expect("ok");
        assert_eq!(f, t);
        for bad in ["2026-13-01", "yesterday", "ge", "ge2026-03-02T25:00:00Z"] {
            assert!(date_bounds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outcomes_accept_balp_codes_and_words() {
        assert!(outcomes("4").expect("ok").contains(&Outcome::Deny));
        assert!(!outcomes("4").expect("ok").contains(&Outcome::Permit));
        assert_eq!(outcomes("permit").expect("ok"), vec![Outcome::Permit]);
        assert_eq!(outcomes("12").expect("ok"), vec![Outcome::Error]);
        assert!(outcomes("maybe").is_err());
    }

    fn rendered(action: mcr_gateway::Action, outcome: Outcome) -> Value {
        let event = event_of(action, outcome);
        audit_event(&AuditEntry { seq: 7, event }, "https://mcr.example")
    }

    fn event_of(action: mcr_gateway::Action, outcome: Outcome) -> mcr_gateway::AuditEvent {
        mcr_gateway::AuditEvent {
            at: "2026-03-02T09:00:00Z".parse().expect("time"),
            correlation_id: "c".into(),
            user_id: "u".into(),
            user_name: "U".into(),
            role: "clinician".into(),
            org_code: "RWH".into(),
            org_name: "Trust".into(),
            patient: None,
            purpose: "directcare".into(),
            action,
            outcome,
            basis: None,
            detail: None,
            sources: Vec::new(),
            role_profile_id: None,
            system: None,
        }
    }

    #[test]
    fn a_sources_detail_names_the_forms_its_search_cannot_find() {
        let mut event = event_of(mcr_gateway::Action::ViewRecord, Outcome::Permit);
        // As the trail stores it.
        event.sources = serde_json::from_value(json!([{
            "source": "community", "org_code": "RY4", "status": "ok", "items": 3, "withheld": 0,
            "unsearchable": ["identifier", "other-server", "contained"]
        }]))
        .expect("a source's audit");
        let rendered = audit_event(&AuditEntry { seq: 7, event }, "https://mcr.example");
        let said = rendered["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .find(|d| d["type"] == "source:community")
            .map(|d| d["valueString"].clone())
            .unwrap_or_default();
        assert_eq!(
            said,
            "community (RY4): ok, 3 item(s), 0 withheld, its search cannot find items naming the patient by NHS number only, an address outside this region's sources or a contained Patient"
        );
    }

    #[test]
    fn each_action_is_coded_as_balp_codes_it() {
        use mcr_gateway::{Action, AuthChannel};
        let view = rendered(Action::ViewRecord, Outcome::NeedsPermission);
        assert_eq!(view["type"]["code"], "rest");
        assert_eq!(view["subtype"][0]["code"], "operation");
        assert_eq!(view["subtype"][1]["code"], "view-record");
        assert_eq!(
            (&view["action"], &view["outcome"]),
            (&json!("E"), &json!("4"))
        );

        // Opening a document reads it (it was coded as a create).
        let doc = rendered(Action::OpenDocument, Outcome::Permit);
        assert_eq!(
            (&doc["subtype"][0]["code"], &doc["action"]),
            (&json!("read"), &json!("R"))
        );

        let sign_in = rendered(Action::Authenticate(AuthChannel::SignIn), Outcome::Deny);
        assert_eq!(
            sign_in["type"],
            json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"})
        );
        assert_eq!(sign_in["subtype"][1]["code"], "authenticate:sign-in");

        // A request refused at the door: a security alert with no standard subtype.
        let refused = rendered(
            Action::Refused(mcr_gateway::RefusalKind::Csrf),
            Outcome::Deny,
        );
        assert_eq!(refused["type"]["code"], "110113");
        assert_eq!(
            refused["subtype"],
            json!([{"system": ACTION_SYSTEM, "code": "refused:csrf"}])
        );
        assert_eq!(
            (&sign_in["action"], &sign_in["outcome"]),
            (&json!("E"), &json!("4"))
        );
    }
}
