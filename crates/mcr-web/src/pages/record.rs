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
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use chrono::NaiveDate;
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

/// How many items a section lists before "Show older".
const SECTION_ROWS: usize = 10;
/// How many items each box of the summary lists (the rest are one link away).
const SUMMARY_ROWS: usize = 3;
/// How many measurements each group of results lists before "Show older".
const RESULT_ROWS: usize = 5;
/// How many encounters the summary shows.
const SUMMARY_ENCOUNTERS: usize = 3;

/// What the reader asked for in the page's address (links and a form: no JavaScript needed):
/// `from` (`YYYY-MM-DD`) hides items dated before it; `older` (section ids, comma-separated)
/// lists those sections whole.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct RecordQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub older: Option<String>,
}

/// The reader's filter, checked.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Items dated before this day are not listed (undated items always are), as
    /// `YYYY-MM-DD`.
    from: Option<String>,
    /// Sections listed whole.
    older: Vec<String>,
    /// What was typed for `from`, to show again.
    pub from_text: String,
    /// Why `from` was not used.
    pub error: Option<String>,
}

impl Filter {
    pub(crate) fn read(q: &RecordQuery) -> Self {
        let mut f = Filter::default();
        if let Some(raw) = q.from.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            f.from_text = clip(raw, 20);
            match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
                Ok(d) => f.from = Some(d.format("%Y-%m-%d").to_string()),
                Err(_) => {
                    f.error =
                        Some("Enter the date as year, month and day, for example 2024-03-31".into())
                }
            }
        }
        if let Some(raw) = q.older.as_deref() {
            f.older = raw
                .split(',')
                .filter(|id| {
                    (1..=40).contains(&id.len())
                        && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                })
                .take(20)
                .map(str::to_owned)
                .collect();
        }
        f
    }

    /// True when the filter's date hides `item` (dated before it).
    fn hides(&self, item: &RecordItem) -> bool {
        let (Some(from), Some(date)) = (self.from.as_deref(), item.date.as_deref()) else {
            return false;
        };
        // ISO 8601 dates compare as text; a partial date (`2024-03`) counts as its start.
        date.get(..10).unwrap_or(date) < from
    }

    fn whole(&self, id: &str) -> bool {
        self.older.iter().any(|o| o == id)
    }

    /// This page's address with section `id` listed whole too.
    fn older_href(&self, id: &str) -> String {
        let mut q = Vec::new();
        if let Some(d) = &self.from {
            q.push(format!("from={d}"));
        }
        let mut older: Vec<&str> = self.older.iter().map(String::as_str).collect();
        older.push(id);
        q.push(format!("older={}", older.join(",")));
        format!("?{}#{id}", q.join("&"))
    }
}

/// One section as shown: a dense table of its items (newest first), or why it is empty.
pub(crate) struct SectionView {
    pub id: &'static str,
    pub title: &'static str,
    pub available: bool,
    pub rows: Vec<ItemView>,
    /// Items not listed because they are dated before the filter's date.
    pub before_filter: usize,
    /// Older items not listed yet: "Show N older".
    pub older: usize,
    pub older_href: String,
}

/// One box of the summary: the first few items, and how many more the section holds.
pub(crate) struct SummaryBox {
    pub id: &'static str,
    pub title: &'static str,
    pub available: bool,
    pub rows: Vec<ItemView>,
    pub more: usize,
    /// The section that lists them all.
    pub href: &'static str,
}

/// Another area of the record, counted in the summary with a link to it.
pub(crate) struct Glance {
    pub label: &'static str,
    pub count: usize,
    pub href: &'static str,
}

/// An investigation: a report (`DiagnosticReport`) with the results it names, as one row.
pub(crate) struct Investigation {
    pub report: ItemView,
    /// Each result the report names that this record holds: what was measured and the value.
    pub results: Vec<String>,
    /// Results it names that are not in this record (not sent, withheld, or not granted).
    pub missing: usize,
}

/// Repeated measurements of one thing, newest first, with a chart when there are several.
pub(crate) struct ResultGroup {
    pub title: String,
    pub rows: Vec<ItemView>,
    pub chart: Option<String>,
    /// Older measurements not listed yet.
    pub older: usize,
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
    /// For each source that sent resources of types the record has no place for: the
    /// sentence naming them and how many.
    pub not_shown: Vec<String>,
    pub withheld: bool,
    /// The sources disagreeing on name, date of birth or sex, and open identity questions
    /// from patient matching (possible wrong NHS number, records in review).
    pub identity_warnings: Vec<String>,
    /// A restricted patient: address and registered practice removed (said on the page).
    pub location_withheld: bool,
    /// Alerts, legal and end-of-life, allergies, current medications, active problems, last
    /// encounters: within the first screen.
    pub summary: Vec<SummaryBox>,
    /// The other areas, counted.
    pub glance: Vec<Glance>,
    pub filter: Filter,
    /// The sections above the results, in order.
    pub upper: Vec<SectionView>,
    pub results_available: bool,
    /// Reports with their results grouped, newest first.
    pub investigations: Vec<Investigation>,
    pub results: Vec<ResultGroup>,
    pub results_before_filter: usize,
    pub results_older_href: String,
    /// The sections below the results.
    pub lower: Vec<SectionView>,
}

const CURRENT_MEDICATION: [&str; 3] = ["active", "intended", "on-hold"];
const ACTIVE_PROBLEM: [&str; 3] = ["active", "recurrence", "relapse"];
const UPCOMING: [&str; 4] = ["booked", "pending", "proposed", "waitlist"];
const OPEN_REFERRAL: [&str; 3] = ["active", "on-hold", "draft"];
const ENDED: [&str; 4] = ["finished", "inactive", "cancelled", "entered-in-error"];

fn has_status(item: &RecordItem, statuses: &[&str]) -> bool {
    item.status
        .as_deref()
        .is_some_and(|s| statuses.contains(&s))
}

/// A section's table: the items `keep` selects, those the filter's date hides counted, the
/// first `SECTION_ROWS` listed unless the reader asked for the whole section.
fn section(
    record: &MergedRecord,
    filter: &Filter,
    s: Section,
    id: &'static str,
    title: &'static str,
    keep: impl Fn(&RecordItem) -> bool,
) -> SectionView {
    let whole = filter.whole(id);
    let mut v = SectionView {
        id,
        title,
        available: !record.unavailable_sections.contains(&s),
        rows: Vec::new(),
        before_filter: 0,
        older: 0,
        older_href: String::new(),
    };
    for item in record.items(s).iter().filter(|i| keep(i)) {
        if filter.hides(item) {
            v.before_filter += 1;
        } else if !whole && v.rows.len() >= SECTION_ROWS {
            v.older += 1;
        } else {
            let mut row = item_view(item);
            if item.resource_type == "DocumentReference" {
                decorate_document(record, item, &mut row);
            }
            v.rows.push(row);
        }
    }
    if v.older > 0 {
        v.older_href = filter.older_href(id);
    }
    v
}

/// A document's link (held by its source, fetched when opened) or its text (sent inline).
fn decorate_document(record: &MergedRecord, item: &RecordItem, row: &mut ItemView) {
    let resource = item.resource.value();
    row.open = resource
        .as_ref()
        .and_then(|res| document_link(&record.nhs_number, item, res));
    if row.open.is_none() {
        row.body = resource.and_then(|r| document_text(&r));
    }
}

/// A box of the summary: the first `limit` items `keep` selects (never date-filtered: the
/// summary is what holds now).
fn summary_box(
    record: &MergedRecord,
    (s, id, title, href): (Section, &'static str, &'static str, &'static str),
    limit: usize,
    keep: impl Fn(&RecordItem) -> bool,
) -> SummaryBox {
    let mut b = SummaryBox {
        id,
        title,
        available: !record.unavailable_sections.contains(&s),
        rows: Vec::new(),
        more: 0,
        href,
    };
    for item in record.items(s).iter().filter(|i| keep(i)) {
        if b.rows.len() < limit {
            b.rows.push(item_view(item));
        } else {
            b.more += 1;
        }
    }
    b
}

/// How many items of section `s` that `keep` selects, or `None` when the role may not see it.
fn glance(
    record: &MergedRecord,
    label: &'static str,
    s: Section,
    href: &'static str,
    keep: impl Fn(&RecordItem) -> bool,
) -> Option<Glance> {
    (!record.unavailable_sections.contains(&s)).then(|| Glance {
        label,
        count: record.items(s).iter().filter(|i| keep(i)).count(),
        href,
    })
}

/// Each report among `items` (newest first) with the observations it names (`result`),
/// found among `items` from the same source by id. Observations stay in their own groups
/// too (the trend of one test across reports).
pub(crate) fn investigations(items: &[&RecordItem]) -> Vec<Investigation> {
    let reports: Vec<&&RecordItem> = items
        .iter()
        .filter(|i| i.resource_type == "DiagnosticReport")
        .collect();
    if reports.is_empty() {
        return Vec::new();
    }
    // (source, observation id) -> the observation, ids borrowed from the items' addresses.
    let observations: std::collections::HashMap<(&str, &str), &RecordItem> = items
        .iter()
        .filter(|i| i.resource_type == "Observation")
        .flat_map(|i| {
            i.sources.iter().filter_map(move |s| {
                let (_, id) = s.full_url.rsplit_once("/Observation/")?;
                Some(((s.source.as_str(), id), *i))
            })
        })
        .collect();
    reports
        .into_iter()
        .map(|report| {
            let source = report.sources.first().map_or("", |s| s.source.as_str());
            let named: Vec<String> = report
                .resource
                .value()
                .and_then(|v| {
                    v.get("result")?.as_array().map(|rs| {
                        rs.iter()
                            .take(200)
                            .filter_map(|r| r.get("reference")?.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default();
            let mut results = Vec::new();
            let mut missing = 0;
            for reference in &named {
                let id = reference
                    .rsplit_once("Observation/")
                    .map_or(reference.as_str(), |(_, id)| id);
                match observations.get(&(source, id)) {
                    Some(o) => results.push(match &o.detail {
                        Some(d) => format!("{}: {d}", o.display),
                        None => o.display.clone(),
                    }),
                    None => missing += 1,
                }
            }
            Investigation {
                report: item_view(report),
                results,
                missing,
            }
        })
        .collect()
}

/// Group results by code (or name), newest first within each group; chart the numeric ones.
/// `limit` rows per group are listed (all when `None`); older ones are counted.
pub(crate) fn result_groups(items: &[&RecordItem], limit: Option<usize>) -> Vec<ResultGroup> {
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
            let listed = limit.unwrap_or(members.len()).min(members.len());
            let older = members.len() - listed;
            Some(ResultGroup {
                title,
                rows: members.into_iter().take(listed).map(item_view).collect(),
                chart,
                older,
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

pub(crate) fn record_page(layout: Layout, view: &mcr_gateway::View, filter: Filter) -> RecordPage {
    let r = &view.record;
    let all = |_: &RecordItem| true;
    let current = |i: &RecordItem| has_status(i, &CURRENT_MEDICATION);
    let f = &filter;
    let summary = vec![
        summary_box(
            r,
            (Section::Alerts, "summary-alerts", "Alerts", "#alerts"),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::LegalEndOfLife,
                "summary-legal",
                "Legal and end-of-life",
                "#legal",
            ),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::Allergies,
                "summary-allergies",
                "Allergies",
                "#allergies",
            ),
            SUMMARY_ROWS,
            all,
        ),
        summary_box(
            r,
            (
                Section::Medications,
                "summary-medications",
                "Current medications",
                "#medications-current",
            ),
            SUMMARY_ROWS,
            current,
        ),
        summary_box(
            r,
            (
                Section::Problems,
                "summary-problems",
                "Active problems",
                "#problems",
            ),
            SUMMARY_ROWS,
            |i| has_status(i, &ACTIVE_PROBLEM),
        ),
        summary_box(
            r,
            (
                Section::Encounters,
                "summary-encounters",
                "Last encounters",
                "#encounters",
            ),
            SUMMARY_ENCOUNTERS,
            all,
        ),
    ];
    let glance: Vec<Glance> = [
        glance(
            r,
            "Upcoming appointments",
            Section::Appointments,
            "#appointments",
            |i| has_status(i, &UPCOMING),
        ),
        glance(r, "Open referrals", Section::Referrals, "#referrals", |i| {
            has_status(i, &OPEN_REFERRAL)
        }),
        glance(r, "Care team", Section::CareTeam, "#care-team", |i| {
            !has_status(i, &ENDED)
        }),
        glance(
            r,
            "Immunisations",
            Section::Immunisations,
            "#immunisations",
            all,
        ),
        glance(r, "Procedures", Section::Procedures, "#procedures", all),
        glance(r, "Results", Section::Results, "#results", all),
        glance(r, "Documents", Section::Documents, "#documents", all),
    ]
    .into_iter()
    .flatten()
    .collect();
    let upper = vec![
        section(
            r,
            f,
            Section::Alerts,
            "alerts",
            Section::Alerts.title(),
            all,
        ),
        section(
            r,
            f,
            Section::LegalEndOfLife,
            "legal",
            Section::LegalEndOfLife.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Allergies,
            "allergies",
            Section::Allergies.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Medications,
            "medications-current",
            "Current medications",
            current,
        ),
        section(
            r,
            f,
            Section::Medications,
            "medications-past",
            "Past medications",
            |i| !current(i),
        ),
        section(
            r,
            f,
            Section::Problems,
            "problems",
            Section::Problems.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Encounters,
            "encounters",
            Section::Encounters.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Appointments,
            "appointments",
            Section::Appointments.title(),
            all,
        ),
    ];
    let results_available = !r.unavailable_sections.contains(&Section::Results);
    let mut results_before_filter = 0;
    let mut investigations = Vec::new();
    let results = if results_available {
        let shown: Vec<&RecordItem> = r
            .items(Section::Results)
            .iter()
            .filter(|i| {
                let hidden = f.hides(i);
                results_before_filter += usize::from(hidden);
                !hidden
            })
            .collect();
        let limit = (!f.whole("results")).then_some(RESULT_ROWS);
        investigations = self::investigations(&shown);
        result_groups(&shown, limit)
    } else {
        Vec::new()
    };
    let results_older_href = f.older_href("results");
    let lower = vec![
        section(
            r,
            f,
            Section::Immunisations,
            "immunisations",
            Section::Immunisations.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Procedures,
            "procedures",
            Section::Procedures.title(),
            all,
        ),
        section(
            r,
            f,
            Section::Referrals,
            "referrals",
            Section::Referrals.title(),
            all,
        ),
        section(r, f, Section::Documents, "documents", "Documents", all),
        section(
            r,
            f,
            Section::CareTeam,
            "care-team",
            Section::CareTeam.title(),
            all,
        ),
        section(
            r,
            f,
            Section::CareAndSupport,
            "care",
            Section::CareAndSupport.title(),
            all,
        ),
    ];
    RecordPage {
        layout,
        nhs: r.nhs_number.to_string(),
        nhs_formatted: r.nhs_number.formatted(),
        patient: r.patient.as_ref().map(|p| {
            let mut banner = patient_banner(p);
            if r.location_withheld {
                // Said, never left blank: the viewer knows the address exists and why it is
                // not here.
                banner.postcode = mcr_gateway::LOCATION_WITHHELD.to_owned();
            }
            banner
        }),
        location_withheld: r.location_withheld,
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
        not_shown: r
            .sources
            .iter()
            .filter_map(mcr_domain::SourceOutcome::not_shown_sentence)
            .collect(),
        withheld: r.withheld,
        // The sources' own disagreement on who this is, then the matching queue's questions.
        identity_warnings: r
            .demographics_differ
            .iter()
            .chain(&view.identity_warnings)
            .cloned()
            .collect(),
        summary,
        glance,
        upper,
        results_available,
        investigations,
        results,
        results_before_filter,
        results_older_href,
        lower,
        filter,
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
    /// Offer emergency access (clinical roles, not after an opt-out or an organisation refusal;
    /// after a restricted record's refusal, yes).
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
            // Emergency access passes a refusal recorded and a restriction (reviewed).
            clinical
                && matches!(
                    d.code,
                    DenyCode::PermissionRefused | DenyCode::RestrictedRecord
                ),
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
    Query(query): Query<RecordQuery>,
) -> Response {
    let nhs = match path_nhs(&user, &raw) {
        Ok(n) => n,
        Err(resp) => return *resp,
    };
    let layout = Layout::staff(&user);
    match state.gateway.view_record(&user.0, &nhs).await {
        Ok(ViewOutcome::Record(pending)) => {
            // The page is written while the audit record commits; it is sent only once it has.
            let filter = Filter::read(&query);
            let page = render(
                StatusCode::OK,
                &record_page(layout.clone(), pending.view(), filter),
            );
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
        let items = [
            item("HbA1c", "2026-03-01", 50.0),
            item("Sodium", "2026-02-01", 140.0),
            item("HbA1c", "2025-09-01", 55.0),
            item("HbA1c", "2025-03-01", 60.0),
        ];
        let refs: Vec<&RecordItem> = items.iter().collect();
        let groups = result_groups(&refs, None);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].title, "HbA1c");
        assert_eq!(groups[0].rows.len(), 3);
        assert_eq!(groups[0].older, 0);
        let limited = result_groups(&refs, Some(2));
        assert_eq!(
            (limited[0].rows.len(), limited[0].older),
            (2, 1),
            "the newest two listed, the oldest counted for 'Show older'"
        );
        assert_eq!(limited[0].rows[1].date, "1 September 2025");
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
            not_shown: Vec::new(),
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
            location_withheld: false,
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
            &Filter::default(),
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
            not_shown: Vec::new(),
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
            location_withheld: false,
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
        let page = record_page(Layout::default(), &view, Filter::default());
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
            not_shown: Vec::new(),
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
            location_withheld: false,
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

    fn dated(section: Section, display: &str, date: &str, status: &str) -> RecordItem {
        RecordItem {
            section,
            display: display.into(),
            status: Some(status.into()),
            date: Some(date.into()),
            ..item(display, date, 1.0)
        }
    }

    fn record_with(sections: Vec<(Section, Vec<RecordItem>)>) -> MergedRecord {
        MergedRecord {
            nhs_number: NhsNumber::parse("9434765919").unwrap_or_else(|_| unreachable!()),
            patient: None,
            patient_url: None,
            sections,
            sources: Vec::new(),
            unavailable_sections: Vec::new(),
            withheld: false,
            demographics_differ: Vec::new(),
            location_withheld: false,
        }
    }

    #[test]
    fn sections_list_the_newest_first_and_count_the_older_and_the_filtered() {
        // 25 problems, one a month, newest first as the merge sorts them.
        let problems: Vec<RecordItem> = (0..25)
            .map(|n| {
                let month = 12 - (n % 12);
                let year = 2026 - n / 12;
                dated(
                    Section::Problems,
                    &format!("Problem {n}"),
                    &format!("{year}-{month:02}-01"),
                    "active",
                )
            })
            .collect();
        let record = record_with(vec![(Section::Problems, problems)]);
        let none = Filter::default();
        let v = section(
            &record,
            &none,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!(v.rows.len(), SECTION_ROWS);
        assert_eq!(v.rows[0].display, "Problem 0", "newest first");
        assert_eq!(v.older, 25 - SECTION_ROWS);
        assert_eq!(v.older_href, "?older=problems#problems");

        let whole = Filter::read(&RecordQuery {
            from: None,
            older: Some("results,problems".into()),
        });
        let v = section(
            &record,
            &whole,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!(
            (v.rows.len(), v.older),
            (25, 0),
            "'show older' lists it whole"
        );

        let from = Filter::read(&RecordQuery {
            from: Some(" 2026-01-01 ".into()),
            older: None,
        });
        let v = section(
            &record,
            &from,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!((v.rows.len(), v.before_filter, v.older), (10, 13, 2));
        assert_eq!(
            from.older_href("results"),
            "?from=2026-01-01&older=results#results",
            "the date filter is kept when showing older items"
        );

        let bad = Filter::read(&RecordQuery {
            from: Some("31/03/2024".into()),
            older: Some("x<script>,PROBLEMS".into()),
        });
        assert!(bad.error.is_some(), "a date that does not read is said");
        assert_eq!(bad.from_text, "31/03/2024", "and shown again as typed");
        let v = section(
            &record,
            &bad,
            Section::Problems,
            "problems",
            "Problems",
            |_| true,
        );
        assert_eq!((v.before_filter, v.older), (0, 15), "and not applied");
    }

    #[test]
    fn the_summary_puts_legal_and_end_of_life_decisions_beside_the_alerts() {
        let record = record_with(vec![
            (
                Section::LegalEndOfLife,
                vec![dated(
                    Section::LegalEndOfLife,
                    "Not for attempted cardiopulmonary resuscitation",
                    "2026-02-01",
                    "active",
                )],
            ),
            (
                Section::Appointments,
                vec![
                    dated(
                        Section::Appointments,
                        "Falls clinic",
                        "2027-01-10",
                        "booked",
                    ),
                    dated(
                        Section::Appointments,
                        "Respiratory clinic",
                        "2025-01-10",
                        "fulfilled",
                    ),
                ],
            ),
        ]);
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let page = record_page(Layout::default(), &view, Filter::default());
        let titles: Vec<&str> = page.summary.iter().map(|b| b.title).collect();
        assert_eq!(
            titles,
            [
                "Alerts",
                "Legal and end-of-life",
                "Allergies",
                "Current medications",
                "Active problems",
                "Last encounters"
            ]
        );
        assert_eq!(
            page.summary[1].rows[0].display,
            "Not for attempted cardiopulmonary resuscitation"
        );
        let upcoming = page
            .glance
            .iter()
            .find(|g| g.label == "Upcoming appointments")
            .map(|g| g.count);
        assert_eq!(
            upcoming,
            Some(1),
            "a booked appointment is upcoming, a fulfilled one not"
        );
        let ids: Vec<&str> = page.upper.iter().map(|s| s.id).collect();
        assert_eq!(
            &ids[..2],
            ["alerts", "legal"],
            "legal and end-of-life near the top"
        );
    }

    #[test]
    fn types_the_record_does_not_show_are_named_in_the_banner() {
        let mut record = record_with(Vec::new());
        record.sources.push(mcr_domain::SourceOutcome {
            source: SourceId::parse("community").unwrap_or_else(|_| unreachable!()),
            org_code: OdsCode::parse("RY4").unwrap_or_else(|_| unreachable!()),
            org_name: "Hertfordshire Community NHS Trust".into(),
            status: SourceStatus::Ok,
            items: 3,
            withheld: 0,
            untied: 0,
            another_patient: 0,
            elapsed_ms: 10,
            warnings: Vec::new(),
            not_shown: vec![
                mcr_domain::NotShown {
                    resource_type: "Goal".into(),
                    count: 12,
                },
                mcr_domain::NotShown {
                    resource_type: "NutritionOrder".into(),
                    count: 1,
                },
            ],
        });
        let view = mcr_gateway::View {
            record,
            basis: mcr_policy::Basis::LegalBasis {
                relationship: mcr_policy::RelationshipKind::GpRegistration,
            },
            classes: Default::default(),
            timings: Vec::new(),
            phases: Vec::new(),
            identity_warnings: Vec::new(),
        };
        let page = record_page(Layout::default(), &view, Filter::default());
        assert_eq!(
            page.not_shown,
            ["Not shown: 12 Goal resources, 1 NutritionOrder resource from Hertfordshire Community NHS Trust (this record has no section for them; ask Hertfordshire Community NHS Trust if you need them)."]
        );
        let html = page.render().unwrap_or_default();
        assert!(html.contains("12 Goal resources"), "{html}");
        assert!(html.contains("has no place in this record"));
    }

    #[test]
    fn a_report_is_listed_with_the_results_it_names() {
        let mut report = dated(Section::Results, "Full blood count", "2026-03-01", "final");
        report.resource_type = "DiagnosticReport".into();
        report.resource =
            mcr_domain::SourceJson::from_value(&json!({"resourceType": "DiagnosticReport",
            "result": [{"reference": "Observation/hb"}, {"reference": "Observation/gone"}]}));
        let mut hb = item("Haemoglobin", "2026-03-01", 131.0);
        hb.sources[0].full_url = "http://gp/Observation/hb".into();
        let other = item("Sodium", "2026-03-01", 140.0);
        let items = [&report, &hb, &other];
        let inv = investigations(&items);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].report.display, "Full blood count");
        assert_eq!(inv[0].results, ["Haemoglobin: 131 mmol/mol"]);
        assert_eq!(
            inv[0].missing, 1,
            "a result it names that the record lacks is counted"
        );
        assert!(investigations(&[&hb, &other]).is_empty());
    }
}
