//! The privacy officer's pages: the review queue of emergency accesses and self-claimed
//! relationships (with the anomaly flags) where an outcome is recorded, and the audit search
//! by user, patient, organisation and period. Each is one gateway call; the gateway decides who
//! may look and audits every read and every outcome.

use super::forms::{clean, Errors};
use super::text::human_time;
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use mcr_domain::{NhsNumber, Role};
use mcr_gateway::{Action, Outcome};
use mcr_gateway::{AuditSearch, GatewayError, ReviewFilter, ReviewItem, ReviewOutcome};
use serde::Deserialize;

/// The filter form shared by the queue and the search, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct FilterForm {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub patient: String,
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub reviewed: Option<String>,
    /// Set by the queue after an outcome is recorded.
    #[serde(default)]
    pub done: Option<i64>,
}

struct Filter {
    user: Option<String>,
    patient: Option<NhsNumber>,
    org: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

fn day(s: &str) -> Result<Option<NaiveDate>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ())
}

impl FilterForm {
    fn cleaned(&self) -> Self {
        Self {
            user: clean(&self.user),
            patient: clean(&self.patient),
            org: clean(&self.org).to_ascii_uppercase(),
            from: clean(&self.from),
            to: clean(&self.to),
            reviewed: self.reviewed.clone(),
            done: self.done,
        }
    }

    fn parse(&self) -> Result<Filter, Errors> {
        let mut errors = Errors::default();
        let patient = if self.patient.is_empty() {
            None
        } else {
            NhsNumber::parse(&self.patient)
                .map_err(|e| {
                    errors.add(
                        "patient",
                        sentence_case(&e.to_string())
                            .trim_end_matches('.')
                            .to_owned(),
                    )
                })
                .ok()
        };
        let from = day(&self.from)
            .map_err(|()| errors.add("from", "From must be a real date, like 2026-03-01"))
            .ok()
            .flatten();
        // "To" is the whole of that day.
        let to = day(&self.to)
            .map_err(|()| errors.add("to", "To must be a real date, like 2026-03-31"))
            .ok()
            .flatten();
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                errors.add("to", "To must be the same as or after From");
            }
        }
        for (field, v, what) in [
            ("user", &self.user, "User id"),
            ("org", &self.org, "Organisation code"),
        ] {
            if v.chars().count() > 100 {
                errors.add(field, format!("{what} must be 100 characters or fewer"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        Ok(Filter {
            user: (!self.user.is_empty()).then(|| self.user.clone()),
            patient,
            org: (!self.org.is_empty()).then(|| self.org.clone()),
            from: from.and_then(start),
            to: to
                .and_then(start)
                .map(|t| t + Duration::days(1) - Duration::nanoseconds(1)),
        })
    }
}

/// A gateway refusal of a filter shown against the period (the only thing it checks that the
/// form did not), or as an error page.
fn filter_error(e: GatewayError) -> Result<Errors, GatewayError> {
    match e {
        GatewayError::Invalid(m) => {
            let mut errors = Errors::default();
            errors.add("from", sentence_case(&m).trim_end_matches('.'));
            Ok(errors)
        }
        GatewayError::PatientNotFound => {
            let mut errors = Errors::default();
            errors.add(
                "patient",
                "No patient with that NHS number is known to My Care Record",
            );
            Ok(errors)
        }
        other => Err(other),
    }
}

fn kind_words(kind: Action, outcome: Outcome) -> &'static str {
    match (kind, outcome) {
        (Action::EmergencyAccess, _) => "Emergency access",
        (Action::ClaimRelationship, _) => "Self-claimed care relationship",
        (Action::RecordPermissionOnBehalf, _) => "Permission given on the patient's behalf",
        (Action::OverrideObjection, Outcome::Deny) => "Refused attempt to override an objection",
        (Action::OverrideObjection, _) => "Objection overridden",
        (Action::WithdrawObjection, Outcome::Deny) => "Refused attempt to lift an objection",
        (Action::WithdrawObjection, _) => "Objection lifted",
        (Action::AnomalyFlag, _) => "Unusual view",
        _ => "Access",
    }
}

fn role_words(role: &str) -> String {
    role.parse::<Role>()
        .map_or_else(|_| role.to_owned(), |r| r.label().to_owned())
}

fn outcome_words(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Appropriate => "Appropriate",
        Outcome::ReferredForInvestigation => "Referred for investigation",
        _ => "Reviewed",
    }
}

pub(crate) struct CaseRow {
    pub seq: i64,
    pub kind: &'static str,
    pub when: String,
    pub who: String,
    pub role: String,
    pub organisation: String,
    pub patient: String,
    pub patient_formatted: String,
    /// "Reason given" (by the user), or "Evidence" (of a flag).
    pub reason_label: &'static str,
    pub reason: String,
    pub views_after: usize,
    pub flags: Vec<String>,
    pub reviews: Vec<String>,
}

fn case_row(i: &ReviewItem) -> CaseRow {
    CaseRow {
        seq: i.seq,
        kind: kind_words(i.kind, i.outcome),
        when: human_time(&i.at),
        who: format!("{} ({})", i.user_name, i.user_id),
        role: role_words(&i.role),
        organisation: format!("{} ({})", i.org_name, i.org_code),
        patient: i.patient.clone().unwrap_or_default(),
        patient_formatted: i
            .patient
            .as_deref()
            .and_then(|p| NhsNumber::parse(p).ok())
            .map_or_else(|| i.patient.clone().unwrap_or_default(), |n| n.formatted()),
        reason_label: if i.kind == Action::AnomalyFlag {
            "Evidence"
        } else {
            "Reason given"
        },
        reason: if i.kind == Action::AnomalyFlag {
            // The rule in words, then the evidence the watch recorded.
            let rule = i
                .reason_code
                .as_deref()
                .and_then(mcr_gateway::WatchRule::parse)
                .map_or("Unusual view", mcr_gateway::WatchRule::title);
            format!("{rule}: {}", i.reason.clone().unwrap_or_default())
        } else {
            [i.reason_code.clone(), i.reason.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        },
        views_after: i.views_after.len(),
        flags: i
            .flags
            .iter()
            .map(mcr_gateway::AnomalyFlag::describe)
            .collect(),
        reviews: i
            .reviews
            .iter()
            .map(|r| {
                format!(
                    "{} by {} on {}: {}",
                    outcome_words(r.outcome),
                    r.by_name,
                    human_time(&r.at),
                    r.note
                )
            })
            .collect(),
    }
}

pub(crate) struct AnomalyRow {
    pub who: String,
    pub organisation: String,
    pub flag: String,
}

#[derive(Template)]
#[template(path = "app/review.html")]
pub(crate) struct QueuePage {
    pub layout: Layout,
    pub form: FilterForm,
    pub errors: Errors,
    pub period: String,
    pub cases: Vec<CaseRow>,
    pub anomalies: Vec<AnomalyRow>,
    pub truncated: bool,
    pub done: Option<i64>,
    /// The case whose outcome form failed, with the choice and note as typed.
    pub failed: Option<i64>,
    pub chosen: String,
    pub note: String,
}

async fn queue_page(
    user: &PageUser,
    state: &AppState,
    form: FilterForm,
    failed: Option<(i64, Errors, String, String)>,
) -> Response {
    let empty = |form: FilterForm, errors: Errors| QueuePage {
        layout: Layout::staff(user),
        form,
        errors,
        period: String::new(),
        cases: Vec::new(),
        anomalies: Vec::new(),
        truncated: false,
        done: None,
        failed: None,
        chosen: String::new(),
        note: String::new(),
    };
    let filter = match form.parse() {
        Ok(f) => f,
        Err(errors) => return render(StatusCode::BAD_REQUEST, &empty(form, errors)),
    };
    let rf = ReviewFilter {
        user_id: filter.user,
        patient: filter.patient,
        org_code: filter.org,
        from: filter.from,
        to: filter.to,
        include_reviewed: form.reviewed.is_some(),
    };
    match state.gateway.review_queue(&user.0, &rf).await {
        Ok(q) => {
            let (status, errors, failed, chosen, note) = match failed {
                Some((seq, errors, chosen, note)) => {
                    (StatusCode::BAD_REQUEST, errors, Some(seq), chosen, note)
                }
                None => (
                    StatusCode::OK,
                    Errors::default(),
                    None,
                    String::new(),
                    String::new(),
                ),
            };
            let page = QueuePage {
                layout: Layout::staff(user),
                period: format!("{} to {}", human_time(&q.from), human_time(&q.to)),
                cases: q.items.iter().map(case_row).collect(),
                anomalies: q
                    .anomalies
                    .iter()
                    .map(|a| AnomalyRow {
                        who: format!("{} ({})", a.user_name, a.user_id),
                        organisation: format!("{} ({})", a.org_name, a.org_code),
                        flag: a.flag.describe(),
                    })
                    .collect(),
                truncated: q.truncated,
                done: form.done,
                form,
                errors,
                failed,
                chosen,
                note,
            };
            render(status, &page)
        }
        Err(e) => match filter_error(e) {
            Ok(errors) => render(StatusCode::BAD_REQUEST, &empty(form, errors)),
            Err(e) => gateway_error(Layout::staff(user), e),
        },
    }
}

pub(crate) async fn queue(
    user: PageUser,
    State(state): State<AppState>,
    Query(form): Query<FilterForm>,
) -> Response {
    queue_page(&user, &state, form.cleaned(), None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutcomeForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn record_outcome(
    user: PageUser,
    State(state): State<AppState>,
    Path(seq): Path<i64>,
    Form(form): Form<OutcomeForm>,
) -> Response {
    let (chosen, note) = (clean(&form.outcome), clean(&form.note));
    let field = format!("outcome-{seq}");
    let mut errors = Errors::default();
    let Some(outcome) = ReviewOutcome::parse(&chosen) else {
        errors.add(&field, "Select an outcome");
        return queue_page(
            &user,
            &state,
            FilterForm::default(),
            Some((seq, errors, chosen, note)),
        )
        .await;
    };
    match state
        .gateway
        .record_review(&user.0, seq, outcome, &note)
        .await
    {
        Ok(_) => Redirect::to(&format!("/app/review?done={seq}")).into_response(),
        Err(GatewayError::Invalid(m)) => {
            errors.add(
                &format!("note-{seq}"),
                sentence_case(&m).trim_end_matches('.'),
            );
            queue_page(
                &user,
                &state,
                FilterForm::default(),
                Some((seq, errors, chosen, note)),
            )
            .await
        }
        Err(e) => gateway_error(Layout::staff(&user), e),
    }
}

pub(crate) struct EntryRow {
    pub seq: i64,
    pub when: String,
    pub who: String,
    pub organisation: String,
    pub patient: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "app/audit.html")]
pub(crate) struct SearchPage {
    pub layout: Layout,
    pub form: FilterForm,
    pub errors: Errors,
    pub searched: bool,
    pub scope: String,
    pub entries: Vec<EntryRow>,
}

/// How many records one page of the search shows.
const SEARCH_COUNT: u32 = 500;

pub(crate) async fn search(
    user: PageUser,
    State(state): State<AppState>,
    Query(form): Query<FilterForm>,
) -> Response {
    let form = form.cleaned();
    let page = |form: FilterForm,
                errors: Errors,
                searched: bool,
                scope: String,
                entries: Vec<EntryRow>| SearchPage {
        layout: Layout::staff(&user),
        form,
        errors,
        searched,
        scope,
        entries,
    };
    let filter = match form.parse() {
        Ok(f) => f,
        Err(errors) => {
            return render(
                StatusCode::BAD_REQUEST,
                &page(form, errors, false, String::new(), Vec::new()),
            )
        }
    };
    let search = AuditSearch {
        patient: filter.patient,
        agent: filter.user,
        from: filter.from,
        to: filter.to,
        outcomes: Vec::new(),
        count: 1_000,
        ..AuditSearch::default()
    };
    match state.gateway.search_audit(&user.0, &search).await {
        Ok(result) => {
            let scope = match &result.scope {
                mcr_gateway::AuditScope::All => format!(
                    "Every record from {} to {}",
                    human_time(&result.from),
                    human_time(&result.to)
                ),
                mcr_gateway::AuditScope::SourceOrganisation(code) => format!(
                    "Accesses to {code}'s data from {} to {}",
                    human_time(&result.from),
                    human_time(&result.to)
                ),
            };
            let entries = result
                .entries
                .iter()
                .filter(|e| filter.org.as_ref().is_none_or(|o| &e.event.org_code == o))
                .take(SEARCH_COUNT as usize)
                .map(|e| EntryRow {
                    seq: e.seq,
                    when: human_time(&e.event.at),
                    who: format!(
                        "{} ({}), {}",
                        e.event.user_name,
                        e.event.user_id,
                        role_words(&e.event.role)
                    ),
                    organisation: format!("{} ({})", e.event.org_name, e.event.org_code),
                    patient: e
                        .event
                        .patient
                        .as_deref()
                        .and_then(|p| NhsNumber::parse(p).ok())
                        .map_or_else(
                            || e.event.patient.clone().unwrap_or_default(),
                            |n| n.formatted(),
                        ),
                    action: e.event.action.to_string(),
                    outcome: e.event.outcome.to_string(),
                    detail: e.event.detail.clone().unwrap_or_default(),
                })
                .collect();
            render(
                StatusCode::OK,
                &page(form, Errors::default(), true, scope, entries),
            )
        }
        Err(e) => match filter_error(e) {
            Ok(errors) => render(
                StatusCode::BAD_REQUEST,
                &page(form, errors, false, String::new(), Vec::new()),
            ),
            Err(e) => gateway_error(Layout::staff(&user), e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_name_their_fields() {
        let ok = FilterForm {
            from: "2026-03-01".into(),
            to: "2026-03-31".into(),
            ..FilterForm::default()
        }
        .parse()
        .expect("valid");
        assert_eq!(
            ok.from.map(|t| t.to_rfc3339()),
            Some("2026-03-01T00:00:00+00:00".into())
        );
        assert!(ok
            .to
            .is_some_and(|t| t.to_rfc3339().starts_with("2026-03-31T23:59:59")));
        let bad = FilterForm {
            from: "1 March".into(),
            patient: "123".into(),
            ..FilterForm::default()
        }
        .parse()
        .err()
        .unwrap_or_default();
        assert!(bad.has("from") && bad.has("patient"), "{bad:?}");
        let backwards = FilterForm {
            from: "2026-03-02".into(),
            to: "2026-03-01".into(),
            ..FilterForm::default()
        }
        .parse()
        .err()
        .unwrap_or_default();
        assert!(backwards.has("to"));
    }
}
