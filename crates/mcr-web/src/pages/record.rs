//! The patient page: the merged record when the view is permitted, else the access step.
//!
//! The record opens with a banner naming every source asked and how it answered, so missing
//! data never looks like no data; then a summary; then each section, every item with its
//! source badge(s) and date.

use super::chart::{trend_svg, Point};
use super::text::{clip, gender, html_to_text, human_date, list_name, sort_key};
use super::{error_page, gateway_error, render, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use mcr_domain::{MergedRecord, NhsNumber, RecordItem, Section, SourceStatus};
use mcr_gateway::RefusalKind;
use mcr_gateway::ViewOutcome;
use mcr_policy::{Decision, DenyCode};
use serde_json::Value;

/// Parse the NHS number in a page path, or answer with a 404 page.
pub(crate) fn path_nhs(user: &PageUser, raw: &str) -> Result<NhsNumber, Box<Response>> {
    NhsNumber::parse(raw).map_err(|e| {
        let mut resp = error_page(
            Layout::staff(user),
            StatusCode::NOT_FOUND,
            &format!("The address does not contain a valid NHS number: {e}."),
        );
        resp.extensions_mut()
            .insert(crate::refusals::Refused(RefusalKind::InvalidNhsNumber));
        Box::new(resp)
    })
}

/// Where one copy of an item came from, for its badge.
pub(crate) struct Badge {
    pub org: String,
    pub recorded: Option<String>,
}

pub(crate) struct ItemView {
    pub display: String,
    pub detail: Option<String>,
    pub status: Option<String>,
    /// In words; "Date not recorded" when the source gave none.
    pub date: String,
    pub sources: Vec<Badge>,
    pub discrepancy: Option<String>,
    /// For documents: the text of the document, when the source sent it inline.
    pub body: Option<String>,
    /// For documents held by their source: where to open it (fetched when opened).
    pub open: Option<String>,
}

fn item_view(item: &RecordItem) -> ItemView {
    ItemView {
        display: item.display.clone(),
        detail: item.detail.clone(),
        status: item.status.clone(),
        date: item
            .date
            .as_deref()
            .map_or_else(|| "Date not recorded".into(), human_date),
        sources: item
            .sources
            .iter()
            .map(|s| Badge {
                org: s.org_name.clone(),
                recorded: s.recorded.as_deref().map(human_date),
            })
            .collect(),
        discrepancy: item.discrepancy.clone(),
        body: None,
        open: None,
    }
}

/// Longest document text shown on the page.
const MAX_DOCUMENT_CHARS: usize = 20_000;
/// Largest inline attachment decoded.
const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;

/// The text of a document a source sent inline (`content[0].attachment.data`), as plain text.
pub(crate) fn document_text(resource: &Value) -> Option<String> {
    let att = resource.get("content")?.get(0)?.get("attachment")?;
    let ct = att
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    let Some(data) = att.get("data").and_then(Value::as_str) else {
        return att.get("url").and_then(Value::as_str).map(|_| {
            "The document is held by the source organisation and is not shown here.".to_owned()
        });
    };
    if data.len() > MAX_ATTACHMENT_BYTES * 4 / 3 + 4 {
        return Some(
            "The document is too large to show here. Ask the source organisation for a copy."
                .into(),
        );
    }
    if !(ct.starts_with("text/plain") || ct.starts_with("text/html")) {
        return Some("The document is in a format that cannot be shown here. Ask the source organisation for a copy.".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = if ct.starts_with("text/html") {
        html_to_text(&text)
    } else {
        text.into_owned()
    };
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    Some(clip(text.trim(), MAX_DOCUMENT_CHARS))
}

/// Where to open a document its source holds (`content[0].attachment.url`, no inline data):
/// the gateway's own address for it, naming the patient, the source and the reference's id.
fn document_link(nhs: &NhsNumber, item: &RecordItem, resource: &Value) -> Option<String> {
    let att = resource.get("content")?.get(0)?.get("attachment")?;
    if att.get("data").is_some() {
        return None;
    }
    att.get("url").and_then(Value::as_str)?;
    let id = resource.get("id").and_then(Value::as_str).filter(|id| {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })?;
    let source = &item.sources.first()?.source;
    Some(format!("/app/patient/{nhs}/documents/{source}/{id}"))
}

pub(crate) struct SourceRow {
    pub name: String,
    pub status: String,
    /// `green`, `red` or `orange`: the tag colour.
    pub tag: &'static str,
    pub tag_text: &'static str,
}

pub(crate) struct PatientBanner {
    pub name: String,
    pub birth_date: String,
    pub gender: String,
    pub postcode: String,
}

fn patient_banner(p: &Value) -> PatientBanner {
    let name = p.get("name").and_then(|n| n.get(0));
    let family = name
        .and_then(|n| n.get("family"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let given: Vec<&str> = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).take(4).collect())
        .unwrap_or_default();
    PatientBanner {
        name: clip(&list_name(family, &given.join(" ")), 200),
        birth_date: p
            .get("birthDate")
            .and_then(Value::as_str)
            .map_or_else(|| "Not recorded".into(), human_date),
        gender: gender(p.get("gender").and_then(Value::as_str)),
        postcode: p
            .get("address")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("postalCode"))
            .and_then(Value::as_str)
            .map_or_else(|| "Not recorded".into(), |s| clip(s, 12)),
    }
}

/// One section as shown: either its items or why it is not shown.
pub(crate) struct SectionView {
    pub id: &'static str,
    pub title: &'static str,
    /// Shown under a larger heading (an `h3`, not an `h2`).
    pub sub: bool,
    pub available: bool,
    pub items: Vec<ItemView>,
}

/// Repeated measurements of one thing, newest first, with a chart when there are several.
pub(crate) struct ResultGroup {
    pub title: String,
    pub rows: Vec<ItemView>,
    pub chart: Option<String>,
}

#[derive(Template)]
#[template(path = "app/record.html")]
pub(crate) struct RecordPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    pub patient: Option<PatientBanner>,
    pub basis: String,
    pub sources: Vec<SourceRow>,
    pub failed: Vec<String>,
    /// For each source that answered with items that could not be tied to this patient: the
    /// sentence that says how many.
    pub not_tied: Vec<String>,
    pub withheld: bool,
    /// The sources disagreeing on name, date of birth or sex, and open identity questions
    /// from patient matching (possible wrong NHS number, records in review).
    pub identity_warnings: Vec<String>,
    /// Alerts, allergies, current medications, active problems, last encounters.
    pub summary: Vec<SectionView>,
    /// Alerts and flags.
    pub upper: Vec<SectionView>,
    /// Current, then past.
    pub medications: Vec<SectionView>,
    /// Problems, then allergies.
    pub lower: Vec<SectionView>,
    pub encounters: SectionView,
    pub results_available: bool,
    pub results: Vec<ResultGroup>,
    /// Documents, then care and support.
    pub tail: Vec<SectionView>,
}

const CURRENT_MEDICATION: [&str; 3] = ["active", "intended", "on-hold"];
const ACTIVE_PROBLEM: [&str; 3] = ["active", "recurrence", "relapse"];
/// How many encounters the summary shows.
const SUMMARY_ENCOUNTERS: usize = 3;

fn has_status(item: &RecordItem, statuses: &[&str]) -> bool {
    item.status
        .as_deref()
        .is_some_and(|s| statuses.contains(&s))
}

fn section(
    record: &MergedRecord,
    s: Section,
    id: &'static str,
    title: &'static str,
    keep: impl Fn(&RecordItem) -> bool,
) -> SectionView {
    SectionView {
        id,
        title,
        sub: false,
        available: !record.unavailable_sections.contains(&s),
        items: record
            .items(s)
            .iter()
            .filter(|i| keep(i))
            .map(item_view)
            .collect(),
    }
}

/// Group results by code (or name), newest first within each group; chart the numeric ones.
pub(crate) fn result_groups(items: &[RecordItem]) -> Vec<ResultGroup> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: std::collections::HashMap<String, Vec<&RecordItem>> =
        std::collections::HashMap::new();
    for item in items {
        let key = item.code.as_ref().map_or_else(
            || format!("text|{}", item.display),
            |(s, c)| format!("{s}|{c}"),
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(item);
    }
    order
        .iter()
        .enumerate()
        .filter_map(|(n, key)| {
            let mut members = groups.remove(key)?;
            members.sort_by_key(|i| std::cmp::Reverse(sort_key(i.date.as_deref())));
            let title = members
                .first()
                .map(|i| i.display.clone())
                .unwrap_or_default();
            let unit = members
                .iter()
                .find_map(|i| {
                    i.resource
                        .value()?
                        .get("valueQuantity")?
                        .get("unit")?
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let points: Vec<Point> = members
                .iter()
                .rev()
                .filter(|i| i.date.is_some())
                .filter_map(|i| {
                    let v = i
                        .resource
                        .value()?
                        .get("valueQuantity")?
                        .get("value")?
                        .as_f64()?;
                    Some(Point {
                        label: human_date(i.date.as_deref().unwrap_or_default()),
                        value: v,
                    })
                })
                .collect();
            let chart = trend_svg(
                &format!("chart-{n}"),
                &clip(&title, 80),
                &clip(&unit, 20),
                &points,
            );
            Some(ResultGroup {
                title,
                rows: members.into_iter().map(item_view).collect(),
                chart,
            })
        })
        .collect()
}

fn source_rows(record: &MergedRecord) -> Vec<SourceRow> {
    record
        .sources
        .iter()
        .map(|s| match &s.status {
            SourceStatus::Ok if s.not_tied() > 0 => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {} shown. {}",
                    s.items,
                    if s.items == 1 { "item" } else { "items" },
                    s.not_tied_sentence().unwrap_or_default()
                ),
                tag: if s.items == 0 { "red" } else { "orange" },
                tag_text: if s.items == 0 {
                    "Nothing could be shown"
                } else {
                    "Some items not shown"
                },
            },
            // Not a fault to retry: the patient's own choice, said as such.
            SourceStatus::Failed(mcr_domain::FailureReason::PatientDissent) => SourceRow {
                name: s.org_name.clone(),
                status: "The patient has declined to share their GP record. Nothing from it is shown; ask the patient.".into(),
                tag: "grey",
                tag_text: "Declined to share",
            },
            SourceStatus::Failed(r) => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Unavailable: {}. Anything it holds is missing from this view.",
                    r.describe()
                ),
                tag: "red",
                tag_text: "Unavailable",
            },
            // What arrived is shown; the rest is said to be missing, never silently absent.
            SourceStatus::Partial(_) => SourceRow {
                name: s.org_name.clone(),
                status: format!("{}.", s.partial_sentence().unwrap_or_default()),
                tag: "orange",
                tag_text: "Partly shown",
            },
            SourceStatus::Ok if !s.warnings.is_empty() => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {}. {}",
                    s.items,
                    if s.items == 1 { "item" } else { "items" },
                    s.warnings.join(" ")
                ),
                tag: "orange",
                tag_text: "May be incomplete",
            },
            SourceStatus::Ok if s.withheld > 0 => SourceRow {
                name: s.org_name.clone(),
                status: "Answered just now. Some items were withheld from this view.".into(),
                tag: "orange",
                tag_text: "Some items withheld",
            },
            SourceStatus::Ok => SourceRow {
                name: s.org_name.clone(),
                status: format!(
                    "Answered just now with {} {}.",
                    s.items,
                    if s.items == 1 { "item" } else { "items" }
                ),
                tag: "green",
                tag_text: "Up to date",
            },
        })
        .collect()
}

pub(crate) fn record_page(layout: Layout, view: &mcr_gateway::View) -> RecordPage {
    let r = &view.record;
    let all = |_: &RecordItem| true;
    let current = |i: &RecordItem| has_status(i, &CURRENT_MEDICATION);
    let sub = |mut s: SectionView| {
        s.sub = true;
        s
    };
    let results_available = !r.unavailable_sections.contains(&Section::Results);
    let mut documents = section(r, Section::Documents, "documents", "Documents", all);
    for (v, item) in documents.items.iter_mut().zip(r.items(Section::Documents)) {
        let resource = item.resource.value();
        v.open = resource
            .as_ref()
            .and_then(|res| document_link(&r.nhs_number, item, res));
        if v.open.is_none() {
            v.body = resource.and_then(|r| document_text(&r));
        }
    }
    let mut recent = section(
        r,
        Section::Encounters,
        "summary-encounters",
        "Recent encounters",
        all,
    );
    recent.items.truncate(SUMMARY_ENCOUNTERS);
    RecordPage {
        layout,
        nhs: r.nhs_number.to_string(),
        nhs_formatted: r.nhs_number.formatted(),
        patient: r.patient.as_ref().map(patient_banner),
        basis: view.basis.describe(),
        sources: source_rows(r),
        // Sources whose record is missing here, wholly or in part.
        failed: r
            .sources
            .iter()
            .filter(|s| !matches!(s.status, SourceStatus::Ok))
            .map(|s| s.org_name.clone())
            .collect(),
        not_tied: r
            .sources
            .iter()
            .filter(|s| matches!(s.status, SourceStatus::Ok | SourceStatus::Partial(_)))
            .filter_map(mcr_domain::SourceOutcome::not_tied_sentence)
            .collect(),
        withheld: r.withheld,
        // The sources' own disagreement on who this is, then the matching queue's questions.
        identity_warnings: r
            .demographics_differ
            .iter()
            .chain(&view.identity_warnings)
            .cloned()
            .collect(),
        summary: vec![
            sub(section(
                r,
                Section::Alerts,
                "summary-alerts",
                "Alerts and flags",
                all,
            )),
            sub(section(
                r,
                Section::Allergies,
                "summary-allergies",
                "Allergies",
                all,
            )),
            sub(section(
                r,
                Section::Medications,
                "summary-medications",
                "Current medications",
                current,
            )),
            sub(section(
                r,
                Section::Problems,
                "summary-problems",
                "Active problems",
                |i| has_status(i, &ACTIVE_PROBLEM),
            )),
            sub(recent),
        ],
        upper: vec![section(
            r,
            Section::Alerts,
            "alerts",
            Section::Alerts.title(),
            all,
        )],
        medications: vec![
            sub(section(
                r,
                Section::Medications,
                "medications-current",
                "Current medications",
                current,
            )),
            sub(section(
                r,
                Section::Medications,
                "medications-past",
                "Past medications",
                |i| !current(i),
            )),
        ],
        lower: vec![
            section(
                r,
                Section::Problems,
                "problems",
                Section::Problems.title(),
                all,
            ),
            section(
                r,
                Section::Allergies,
                "allergies",
                Section::Allergies.title(),
                all,
            ),
        ],
        encounters: section(
            r,
            Section::Encounters,
            "encounters-list",
            Section::Encounters.title(),
            all,
        ),
        results_available,
        results: if results_available {
            result_groups(r.items(Section::Results))
        } else {
            Vec::new()
        },
        tail: vec![
            documents,
            section(
                r,
                Section::CareAndSupport,
                "care",
                Section::CareAndSupport.title(),
                all,
            ),
        ],
    }
}

/// What the user can do when the view is not permitted now.
#[derive(Template)]
#[template(path = "app/access_step.html")]
pub(crate) struct AccessStepPage {
    pub layout: Layout,
    pub nhs: String,
    pub nhs_formatted: String,
    /// `needs-permission`, `needs-relationship` or `deny`.
    pub outcome: &'static str,
    pub sentence: String,
    /// The deny code, when denied.
    pub deny_code: String,
    /// Offer emergency access (clinical roles, not after an opt-out or an organisation refusal).
    pub offer_emergency: bool,
    /// Offer to record the patient's changed mind after a refusal.
    pub offer_reask: bool,
}

fn access_step(
    user: &PageUser,
    layout: Layout,
    nhs: &NhsNumber,
    decision: &Decision,
) -> AccessStepPage {
    let clinical = matches!(
        user.0.principal.role,
        mcr_domain::Role::Clinician | mcr_domain::Role::Nurse | mcr_domain::Role::Paramedic
    );
    let (deny_code, offer_emergency, offer_reask) = match decision {
        Decision::Deny(d) => (
            d.code.as_str().to_owned(),
            clinical && d.code == DenyCode::PermissionRefused,
            d.code == DenyCode::PermissionRefused,
        ),
        _ => (String::new(), clinical, false),
    };
    AccessStepPage {
        layout,
        nhs: nhs.to_string(),
        nhs_formatted: nhs.formatted(),
        outcome: decision.code(),
        sentence: decision.sentence(),
        deny_code,
        offer_emergency,
        offer_reask,
    }
}

pub(crate) async fn patient(
    user: PageUser,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let layout = Layout::staff(&user);
    match state.gateway.view_record(&user.0, &nhs).await {
        Ok(ViewOutcome::Record(pending)) => {
            // The page is written while the audit record commits; it is sent only once it has.
            let page = render(StatusCode::OK, &record_page(layout.clone(), pending.view()));
            match pending.committed().await {
                Ok(_) => page,
                Err(e) => gateway_error(layout, e),
            }
        }
        Ok(ViewOutcome::NotPermitted(decision)) => {
            let status = if matches!(decision, Decision::Deny(_)) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            render(status, &access_step(&user, layout, &nhs, &decision))
        }
        Err(e) => gateway_error(layout, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_domain::{DataClass, ItemSource, OdsCode, SourceId};
    use serde_json::json;

    fn item(display: &str, date: &str, value: f64) -> RecordItem {
        RecordItem {
            section: Section::Results,
            class: DataClass::Results,
            resource_type: "Observation".into(),
            code: Some(("http://loinc.org".into(), display.into())),
            display: display.into(),
            detail: Some(format!("{value} mmol/mol")),
            status: Some("final".into()),
            date: Some(date.into()),
            sources: vec![ItemSource {
                source: SourceId::parse("gp").unwrap_or_else(|_| unreachable!()),
                org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
                org_name: "Bridge Street Surgery".into(),
                full_url: "http://gp/Observation/1".into(),
                recorded: Some(date.into()),
            }],
            discrepancy: None,
            resource: mcr_domain::SourceJson::from_value(
                &json!({"resourceType": "Observation", "valueQuantity": {"value": value, "unit": "mmol/mol"}}),
            ),
        }
    }

    #[test]
    fn results_group_by_code_and_chart_repeats() {
        let items = vec![
            item("HbA1c", "2026-03-01", 50.0),
            item("Sodium", "2026-02-01", 140.0),
            item("HbA1c", "2025-09-01", 55.0),
            item("HbA1c", "2025-03-01", 60.0),
        ];
        let groups = result_groups(&items);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].title, "HbA1c");
        assert_eq!(groups[0].rows.len(), 3);
        assert_eq!(groups[0].rows[0].date, "1 March 2026");
        let chart = groups[0].chart.as_deref().unwrap_or_default();
        assert!(
            chart.contains("3 measurements from 1 March 2025 to 1 March 2026"),
            "{chart}"
        );
        assert!(
            groups[1].chart.is_none(),
            "a single measurement has no trend"
        );
    }

    #[test]
    fn documents_are_decoded_to_text() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = json!({"content": [{"attachment": {"contentType": "text/html", "data": b64("<p>Discharged</p><script>alert(1)</script>")}}]});
        assert_eq!(document_text(&doc).as_deref(), Some("Discharged"));
        let doc = json!({"content": [{"attachment": {"contentType": "text/plain", "data": b64("Line one\nLine two\u{0}")}}]});
        assert_eq!(document_text(&doc).as_deref(), Some("Line one\nLine two"));
        let doc = json!({"content": [{"attachment": {"contentType": "application/pdf", "data": b64("%PDF")}}]});
        assert!(document_text(&doc)
            .unwrap_or_default()
            .contains("cannot be shown"));
        assert!(document_text(&json!({})).is_none());
    }

    #[test]
    fn banner_names_every_source_and_why_one_failed() {
        let outcome = |id: &str, status: SourceStatus, withheld: usize| mcr_domain::SourceOutcome {
            untied: 0,
            another_patient: 0,
            source: SourceId::parse(id).unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
            org_name: format!("Org {id}"),
            status,
            items: 3,
            withheld,
            elapsed_ms: 10,
            warnings: Vec::new(),
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: vec![
                outcome("gp", SourceStatus::Ok, 0),
                outcome(
                    "acute",
                    SourceStatus::Failed(mcr_domain::FailureReason::Timeout { after_ms: 3000 }),
                    0,
                ),
                outcome("community", SourceStatus::Ok, 2),
                mcr_domain::SourceOutcome {
                    items: 0,
                    untied: 40,
                    another_patient: 2,
                    ..outcome("socialcare", SourceStatus::Ok, 0)
                },
            ],
            unavailable_sections: vec![Section::Documents],
            withheld: true,
            demographics_differ: Vec::new(),
        };
        let rows = source_rows(&record);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].tag_text, "Nothing could be shown");
        assert_eq!(
            rows[3].status,
            "Answered just now with 0 items shown. 42 items from Org socialcare could not be tied to this patient and are not shown (2 named another patient): nothing it sent could be shown."
        );
        assert_eq!(
            (rows[0].tag_text, rows[0].status.as_str()),
            ("Up to date", "Answered just now with 3 items.")
        );
        assert_eq!(rows[1].tag_text, "Unavailable");
        assert!(
            rows[1].status.contains("did not answer within 3.0 seconds"),
            "{}",
            rows[1].status
        );
        assert_eq!(rows[2].tag_text, "Some items withheld");
        let docs = section(
            &record,
            Section::Documents,
            "documents",
            "Documents",
            |_| true,
        );
        assert!(!docs.available);
    }

    #[test]
    fn a_source_cut_short_is_shown_as_partly_shown_and_named_as_missing() {
        let partial = mcr_domain::SourceOutcome {
            source: SourceId::parse("acute").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("RWH").unwrap_or_else(|_| unreachable!()),
            org_name: "East and North Hertfordshire NHS Trust".into(),
            status: SourceStatus::Partial(mcr_domain::FailureReason::Timeout { after_ms: 3000 }),
            items: 412,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 3000,
            warnings: Vec::new(),
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            sections: Vec::new(),
            sources: vec![partial],
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: vec![
                "The sources disagree on this patient's date of birth.".into()
            ],
            patient_url: None,
        };
        let rows = source_rows(&record);
        assert_eq!(rows[0].tag_text, "Partly shown");
        assert_eq!(
            rows[0].status,
            "Only part of the record at East and North Hertfordshire NHS Trust is shown: 412 items arrived before the 3.0-second deadline; the rest of its record is missing here."
        );
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: vec!["A possible wrong NHS number is in review.".into()],
        };
        let page = record_page(Layout::default(), &view);
        assert_eq!(
            page.failed,
            ["East and North Hertfordshire NHS Trust"],
            "the banner names it among those to contact for what is missing"
        );
        assert_eq!(
            page.identity_warnings,
            [
                "The sources disagree on this patient's date of birth.",
                "A possible wrong NHS number is in review."
            ],
            "the sources' disagreement on who this is, first, under 'Check this is the right person'"
        );
    }

    #[test]
    fn banner_says_a_dissent_in_words_and_shows_a_practices_warnings() {
        let base = mcr_domain::SourceOutcome {
            source: SourceId::parse("gp").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
            org_name: "Riverside Surgery".into(),
            status: SourceStatus::Failed(mcr_domain::FailureReason::PatientDissent),
            items: 0,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 10,
            warnings: Vec::new(),
        };
        let warned = mcr_domain::SourceOutcome {
            status: SourceStatus::Ok,
            items: 2,
            warnings: vec!["Some GP record items were excluded by the practice.".into()],
            ..base.clone()
        };
        let record = MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections: Vec::new(),
            sources: vec![base, warned],
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: Vec::new(),
        };
        let rows = source_rows(&record);
        assert_eq!(rows[0].tag_text, "Declined to share");
        assert!(
            rows[0]
                .status
                .starts_with("The patient has declined to share their GP record."),
            "{}",
            rows[0].status
        );
        assert_eq!(rows[1].tag_text, "May be incomplete");
        assert_eq!(
            rows[1].status,
            "Answered just now with 2 items. Some GP record items were excluded by the practice."
        );
    }

    #[test]
    fn patient_banner_reads_defensively() {
        let b = patient_banner(
            &json!({"name": [{"family": "Smith", "given": ["Ann", 7]}], "birthDate": "1950-01-02", "gender": "female"}),
        );
        assert_eq!(b.name, "SMITH, Ann");
        assert_eq!(b.birth_date, "2 January 1950");
        assert_eq!(b.postcode, "Not recorded");
        let b = patient_banner(&json!("nonsense"));
        assert_eq!(b.name, "(no name recorded)");
    }
}
