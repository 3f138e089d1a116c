//! The patient page: the merged record when the view is permitted, else the access step.
//!
//! The record opens with a banner naming every source asked and how it answered, so missing
//! data never looks like no data; then a summary; then each section, every item with its
//! source badge(s) and date. This module holds the handler and the page's model, assembled
//! from one room per trade:
//!
//! - [`banner`]: the patient banner and the sources' rows (who answered, how, what is missing);
//! - [`sections`]: the reader's date filter and "show older", and each section's table;
//! - [`summary`]: the summary's boxes and the glance that counts the other areas;
//! - [`results`]: investigations (reports with their results) and groups of results;
//! - [`read`]: the few fields the results read from a resource's text, without its tree;
//! - [`documents`]: a document's text when sent inline, or where to open it;
//! - [`access_step`]: what the user can do when the view is not permitted now;
//! - [`stream`]: the page sent in parts as the sources answer.

mod access_step;
mod banner;
mod documents;
mod read;
mod results;
mod sections;
mod stream;
mod summary;

use sections::{Filter, RecordQuery};

use super::text::human_date;
use super::{error_page, gateway_error, render, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use banner::{patient_banner, source_rows, PatientBanner, SourceRow};
use mcr_domain::{MergedRecord, NhsNumber, RecordItem, SourceStatus};
use mcr_gateway::RefusalKind;
use mcr_gateway::{GatewayError, StreamOutcome};
use mcr_policy::Decision;
use results::Results;
use sections::SectionView;
use summary::{Glance, SummaryBox};

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

/// The page's last part ([`stream`]): who answered and how, what could not be shown, and
/// whether the record is complete; and every part of the record, for those not sent yet.
#[derive(Template)]
#[template(path = "app/record_close.html")]
pub(crate) struct RecordPage {
    pub nhs: String,
    pub patient: Option<PatientBanner>,
    pub sources: Vec<SourceRow>,
    pub failed: Vec<String>,
    /// For each source that answered with items that could not be tied to this patient: the
    /// sentence that says how many.
    pub not_tied: Vec<String>,
    /// For each source that sent resources of types the record has no place for: the
    /// sentence naming them and how many.
    pub not_shown: Vec<String>,
    /// For each source that answered whose search cannot be asked for every form of patient
    /// reference: the sentence naming the forms (one line a source).
    pub unsearchable: Vec<String>,
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
    /// The sections above the results, in order.
    pub upper: Vec<SectionView>,
    /// Reports with their results, and results grouped, newest first.
    pub results: Results,
    /// The sections below the results.
    pub lower: Vec<SectionView>,
    /// Items that arrived for a section after it was sent, one sentence per section.
    pub late: Vec<String>,
    /// The audit record of what each source gave could not be written.
    pub audit_failed: bool,
}

pub(crate) fn record_page(view: &mcr_gateway::View, filter: &Filter) -> RecordPage {
    let r = &view.record;
    RecordPage {
        nhs: r.nhs_number.to_string(),
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
        sources: source_rows(r),
        failed: failed(r),
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
        unsearchable: r
            .sources
            .iter()
            .filter_map(mcr_domain::SourceOutcome::unsearchable_sentence)
            .collect(),
        withheld: r.withheld,
        // The sources' own disagreement on who this is, then the matching queue's questions.
        identity_warnings: r
            .demographics_differ
            .iter()
            .chain(&view.identity_warnings)
            .cloned()
            .collect(),
        summary: summary::boxes(r),
        glance: summary::glances(r),
        upper: sections::upper(r, filter),
        results: Results::of(r, filter),
        lower: sections::lower(r, filter),
        late: Vec::new(),
        audit_failed: false,
    }
}

/// Sources whose record is missing here, wholly or in part.
fn failed(r: &MergedRecord) -> Vec<String> {
    r.sources
        .iter()
        .filter(|s| !matches!(s.status, SourceStatus::Ok))
        .map(|s| s.org_name.clone())
        .collect()
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
    match state.gateway.view_record_streamed(&user.0, &nhs).await {
        // Decided and audited: the page is sent in parts as the sources answer.
        Ok(StreamOutcome::Opened(view)) => stream::respond(layout, view, Filter::read(&query)),
        Ok(StreamOutcome::NotPermitted(decision)) => {
            let status = if matches!(decision, Decision::Deny(_)) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            render(
                status,
                &access_step::access_step(&user, layout, &nhs, &decision),
            )
        }
        Err(GatewayError::Merged { retired, survivor }) => {
            super::merge::merged_page(layout, &retired, &survivor)
        }
        Err(e) => gateway_error(layout, e),
    }
}

/// Items and records the record's tests build.
#[cfg(test)]
pub(super) mod fixtures {
    use mcr_domain::{
        DataClass, ItemSource, MergedRecord, NhsNumber, OdsCode, RecordItem, Section, SourceId,
    };
    use serde_json::json;

    pub(crate) fn item(display: &str, date: &str, value: f64) -> RecordItem {
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

    pub(crate) fn dated(section: Section, display: &str, date: &str, status: &str) -> RecordItem {
        RecordItem {
            section,
            display: display.into(),
            status: Some(status.into()),
            date: Some(date.into()),
            ..item(display, date, 1.0)
        }
    }

    pub(crate) fn record_with(sections: Vec<(Section, Vec<RecordItem>)>) -> MergedRecord {
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
}
