//! Finding the patient: NHS number, or family name and date of birth (given name and postcode
//! narrow it). Results show enough to tell two people apart, warn when sources disagree about
//! who someone is, and mark links made by demographic match.

use super::forms::{clean, parse_birth_date, Errors};
use super::text::{gender, human_date, list_name};
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mcr_domain::{NhsNumber, OdsCode, SourceId};
use mcr_gateway::{GatewayError, PatientMatch, PatientQuery};
use mcr_store::{DemographicQuery, LinkMethod};
use serde::Deserialize;

/// What a restricted (S-flagged) patient's postcode or practice shows as, wherever staff look.
pub(crate) const WITHHELD: &str = "Withheld: restricted record";

/// The search form as typed (kept to show again).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SearchForm {
    #[serde(default)]
    pub nhs: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub given: String,
    #[serde(default, rename = "dob-day")]
    pub dob_day: String,
    #[serde(default, rename = "dob-month")]
    pub dob_month: String,
    #[serde(default, rename = "dob-year")]
    pub dob_year: String,
    #[serde(default)]
    pub postcode: String,
    /// Present when the form was submitted (so an empty submission is an error, not a fresh page).
    #[serde(default)]
    pub search: Option<String>,
}

impl SearchForm {
    fn cleaned(&self) -> Self {
        Self {
            nhs: clean(&self.nhs),
            family: clean(&self.family),
            given: clean(&self.given),
            dob_day: clean(&self.dob_day),
            dob_month: clean(&self.dob_month),
            dob_year: clean(&self.dob_year),
            postcode: clean(&self.postcode),
            search: self.search.clone(),
        }
    }

    fn is_blank(&self) -> bool {
        [
            &self.nhs,
            &self.family,
            &self.given,
            &self.dob_day,
            &self.dob_month,
            &self.dob_year,
            &self.postcode,
        ]
        .iter()
        .all(|s| s.is_empty())
    }
}

/// Validate the form into a query, or say what is wrong with which field.
pub(crate) fn to_query(
    form: &SearchForm,
    today: chrono::NaiveDate,
) -> Result<PatientQuery, Errors> {
    let mut errors = Errors::default();
    if !form.nhs.is_empty() {
        return NhsNumber::parse(&form.nhs)
            .map(PatientQuery::NhsNumber)
            .map_err(|e| {
                errors.add(
                    "nhs",
                    sentence_case(&e.to_string())
                        .trim_end_matches('.')
                        .to_owned(),
                );
                errors
            });
    }
    if form.is_blank() {
        errors.add(
            "nhs",
            "Enter an NHS number, or the patient's family name and date of birth",
        );
        return Err(errors);
    }
    if form.family.is_empty() {
        errors.add("family", "Enter the patient's family name (surname)");
    }
    let birth_date = match parse_birth_date(&form.dob_day, &form.dob_month, &form.dob_year, today) {
        Ok(Some(d)) => Some(d),
        Ok(None) => {
            errors.add("dob-day", "Enter the patient's date of birth");
            None
        }
        Err(p) => {
            errors.add(
                &format!("dob-{}", p.field_suffix()),
                p.message("Date of birth"),
            );
            None
        }
    };
    if form.postcode.chars().count() > 10 {
        errors.add("postcode", "Postcode must be 10 characters or fewer");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PatientQuery::Demographics(DemographicQuery {
        family: form.family.clone(),
        given: (!form.given.is_empty()).then(|| form.given.clone()),
        birth_date,
        postcode: (!form.postcode.is_empty()).then(|| form.postcode.clone()),
    }))
}

pub(crate) struct SourceHeld {
    pub name: String,
    pub by_demographics: bool,
}

pub(crate) struct ResultRow {
    pub nhs: String,
    pub nhs_formatted: String,
    pub name: String,
    pub birth_date: String,
    pub gender: String,
    pub postcode: String,
    pub gp_practice: String,
    pub sources: Vec<SourceHeld>,
    /// Organisations whose details for this person differ from the index.
    pub differing: Vec<String>,
}

#[derive(Template)]
#[template(path = "app/search.html")]
pub(crate) struct SearchPage {
    pub layout: Layout,
    pub form: SearchForm,
    pub errors: Errors,
    /// `None` before a search; `Some(rows)` after one (possibly empty).
    pub results: Option<Vec<ResultRow>>,
}

/// The organisation name for a source id, as configured.
pub(crate) fn source_name(state: &AppState, id: &SourceId) -> String {
    state
        .gateway
        .federation()
        .source(id)
        .map_or_else(|| id.to_string(), |s| s.config().organisation.name.clone())
}

fn practice_name(state: &AppState, code: Option<&str>) -> String {
    let Some(code) = code else {
        return "Not recorded".into();
    };
    OdsCode::parse(code)
        .ok()
        .and_then(|c| {
            state
                .gateway
                .orgs()
                .get(&c)
                .map(|o| format!("{} ({code})", o.name))
        })
        .unwrap_or_else(|| code.to_owned())
}

fn row(state: &AppState, m: &PatientMatch) -> ResultRow {
    let p = &m.patient;
    ResultRow {
        nhs: p.nhs_number.to_string(),
        nhs_formatted: p.nhs_number.formatted(),
        name: list_name(&p.family, &p.given),
        birth_date: human_date(&p.birth_date.to_string()),
        gender: gender(p.gender.as_deref()),
        postcode: if m.location_withheld {
            mcr_gateway::LOCATION_WITHHELD.to_owned()
        } else {
            p.postcode.clone().unwrap_or_else(|| "Not recorded".into())
        },
        gp_practice: if m.location_withheld {
            WITHHELD.to_owned()
        } else {
            practice_name(state, p.gp_practice.as_deref())
        },
        sources: m
            .links
            .iter()
            .map(|l| SourceHeld {
                name: source_name(state, &l.source),
                by_demographics: l.method == LinkMethod::Demographics,
            })
            .collect(),
        differing: m
            .differing_sources
            .iter()
            .map(|s| SourceId::parse(s).map_or_else(|_| s.clone(), |id| source_name(state, &id)))
            .collect(),
    }
}

pub(crate) async fn search(
    user: PageUser,
    State(state): State<AppState>,
    Query(form): Query<SearchForm>,
) -> Response {
    let layout = Layout::staff(&user);
    let form = form.cleaned();
    if form.search.is_none() && form.is_blank() {
        return render(
            StatusCode::OK,
            &SearchPage {
                layout,
                form,
                errors: Errors::default(),
                results: None,
            },
        );
    }
    let today = state.gateway.clock().now().date_naive();
    let query = match to_query(&form, today) {
        Ok(q) => q,
        Err(errors) => {
            return render(
                StatusCode::BAD_REQUEST,
                &SearchPage {
                    layout,
                    form,
                    errors,
                    results: None,
                },
            )
        }
    };
    match state.gateway.search(&user.0, &query).await {
        Ok(matches) => {
            let rows = matches.iter().map(|m| row(&state, m)).collect();
            render(
                StatusCode::OK,
                &SearchPage {
                    layout,
                    form,
                    errors: Errors::default(),
                    results: Some(rows),
                },
            )
        }
        Err(GatewayError::Merged { retired, survivor }) => {
            super::merge::merged_page(layout, &retired, &survivor)
        }
        Err(GatewayError::Invalid(msg)) => {
            let mut errors = Errors::default();
            errors.add("family", msg.trim_end_matches('.'));
            render(
                StatusCode::BAD_REQUEST,
                &SearchPage {
                    layout,
                    form,
                    errors,
                    results: None,
                },
            )
        }
        Err(e) => gateway_error(layout, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default()
    }

    fn form(nhs: &str, family: &str, d: &str, m: &str, y: &str) -> SearchForm {
        SearchForm {
            nhs: nhs.into(),
            family: family.into(),
            dob_day: d.into(),
            dob_month: m.into(),
            dob_year: y.into(),
            search: Some("1".into()),
            ..SearchForm::default()
        }
    }

    #[test]
    fn nhs_number_errors_use_the_domain_words() {
        let e = to_query(&form("12345", "", "", "", ""), today())
            .err()
            .unwrap_or_default();
        assert_eq!(
            e.get("nhs"),
            Some("An NHS number has 10 digits; this has 5")
        );
        let e = to_query(&form("9434765918", "", "", "", ""), today())
            .err()
            .unwrap_or_default();
        assert_eq!(
            e.get("nhs"),
            Some("The check digit does not match: this is not a valid NHS number")
        );
        assert!(matches!(
            to_query(&form("943 476 5919", "", "", "", ""), today()),
            Ok(PatientQuery::NhsNumber(_))
        ));
    }

    #[test]
    fn demographic_search_needs_family_name_and_birth_date() {
        let e = to_query(&form("", "", "", "", ""), today())
            .err()
            .unwrap_or_default();
        assert!(e.has("nhs"));
        let e = to_query(&form("", "Smith", "", "", ""), today())
            .err()
            .unwrap_or_default();
        assert_eq!(e.get("dob-day"), Some("Enter the patient's date of birth"));
        let e = to_query(&form("", "", "1", "", "1980"), today())
            .err()
            .unwrap_or_default();
        assert!(e.has("family"));
        assert_eq!(
            e.get("dob-month"),
            Some("Date of birth must include a month")
        );
        match to_query(&form("", "Smith", "1", "2", "1980"), today()) {
            Ok(PatientQuery::Demographics(q)) => {
                assert_eq!(q.family, "Smith");
                assert_eq!(q.birth_date, chrono::NaiveDate::from_ymd_opt(1980, 2, 1));
                assert!(q.given.is_none() && q.postcode.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
