//! Deciding about local identities (index persons made from a record with no NHS number) on the
//! matching pages: link or rule out a pair in the queue, and a local identity's own page
//! listing the records linked to it, each but the one it was made from with an unlink button.
//! A local identity is labelled as one everywhere (its `L` identifier), never as an NHS number.
//! One gateway call per page; the gateway decides who may look and audits every read and
//! decision.

use super::forms::clean;
use super::matching::queue_page;
use super::text::human_day;
use super::{gateway_error, render, sentence_case, Layout, PageUser};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mcr_domain::{LocalPersonId, SourceId};
use mcr_gateway::{GatewayError, LocalIdentityView, LocalVerdict};
use mcr_store::LinkMethod;
use serde::Deserialize;

/// One record linked to the local identity.
pub(crate) struct LinkedRecordView {
    pub id: String,
    pub source: String,
    pub source_name: String,
    pub local_id: String,
    pub name: String,
    pub birth_date: String,
    pub postcode: String,
    /// How it came to be linked.
    pub how: &'static str,
    /// The record the local identity was made from: never unlinked from it.
    pub origin: bool,
}

#[derive(Template)]
#[template(path = "app/local_identity.html")]
pub(crate) struct LocalIdentityPage {
    pub layout: Layout,
    pub person: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub postcode: String,
    pub made_from: String,
    /// Where it went, when it was found to have an NHS number.
    pub resolved: Option<String>,
    pub records: Vec<LinkedRecordView>,
    pub others_not_shown: usize,
    pub done: Option<i64>,
    pub error: Option<String>,
}

fn or_not_recorded(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty())
        .map_or_else(|| "Not recorded".to_owned(), str::to_owned)
}

fn page(
    layout: Layout,
    v: &LocalIdentityView,
    done: Option<i64>,
    error: Option<String>,
) -> LocalIdentityPage {
    let p = &v.person;
    let made_from = v.records.iter().find(|r| r.origin).map_or_else(
        || format!("A record held by {}", p.origin.0),
        |r| format!("{} record {}", r.source_name, r.link.local_id),
    );
    LocalIdentityPage {
        layout,
        person: p.id.to_string(),
        name: format!("{}, {}", p.family, p.given),
        birth_date: human_day(p.birth_date),
        sex: or_not_recorded(p.gender.as_deref()),
        postcode: or_not_recorded(p.postcode.as_deref()),
        made_from,
        resolved: p.resolved.as_ref().map(|r| {
            let how = match r.method {
                LinkMethod::PdsTrace => "a trace in the Personal Demographics Service",
                LinkMethod::NhsNumber => "a record of it now carrying an NHS number",
                _ => "a record carrying an NHS number that matched it",
            };
            format!(
                "This local identity was found to be NHS number {} on {}, by {how}. Its {} record(s) moved to that NHS number; decide about them there.",
                r.nhs_number.formatted(),
                human_day(r.at.date_naive()),
                r.links_moved
            )
        }),
        records: v
            .records
            .iter()
            .map(|r| {
                let l = &r.link;
                LinkedRecordView {
                    id: format!("{}-{}", l.source, l.local_id)
                        .chars()
                        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                        .collect(),
                    source: l.source.to_string(),
                    source_name: r.source_name.clone(),
                    local_id: l.local_id.clone(),
                    name: format!("{}, {}", l.family, l.given),
                    birth_date: l
                        .birth_date
                        .map_or_else(|| "Not recorded".to_owned(), human_day),
                    postcode: or_not_recorded(l.postcode.as_deref()),
                    how: if r.origin {
                        "Made from this record"
                    } else {
                        "Linked by demographics"
                    },
                    origin: r.origin,
                }
            })
            .collect(),
        others_not_shown: v.others_not_shown,
        done,
        error,
    }
}

async fn identity_page(
    state: &AppState,
    user: &PageUser,
    id: LocalPersonId,
    done: Option<i64>,
    error: Option<String>,
) -> Response {
    match state.gateway.local_identity(&user.0, id).await {
        Ok(v) => render(
            if error.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            },
            &page(Layout::staff(user), &v, done, error),
        ),
        Err(e) => gateway_error(Layout::staff(user), e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DoneQuery {
    #[serde(default)]
    done: Option<i64>,
}

/// `GET /app/matching/local/{id}`: a local identity and the records linked to it.
pub(crate) async fn identity(
    user: PageUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let Ok(id) = LocalPersonId::parse(&id) else {
        return gateway_error(
            Layout::staff(&user),
            GatewayError::Invalid(
                "a local identity is L and nine digits, for example L000000042".into(),
            ),
        );
    };
    identity_page(&state, &user, id, q.done, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LocalDecideForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    local_id: String,
    /// The local identity (`L` and nine digits).
    #[serde(default)]
    person: String,
    /// `link`, `not-a-match` or `unlink`.
    #[serde(default)]
    verdict: String,
}

/// `POST /app/matching/local/decide`: link or rule out a pair in the queue (back to the queue),
/// or unlink a record (back to the local identity's page).
pub(crate) async fn decide(
    user: PageUser,
    State(state): State<AppState>,
    Form(form): Form<LocalDecideForm>,
) -> Response {
    let parsed = (
        SourceId::parse(&clean(&form.source)),
        LocalPersonId::parse(&clean(&form.person)),
        LocalVerdict::parse(&form.verdict),
    );
    let (Ok(source), Ok(person), Some(verdict)) = parsed else {
        return queue_page(
            &state,
            &user,
            None,
            Some("Choose a pair in the queue, then link it or mark it not a match".into()),
        )
        .await;
    };
    let local_id = clean(&form.local_id);
    let outcome = state
        .gateway
        .decide_local_match(&user.0, &source, &local_id, person, verdict)
        .await;
    match (outcome, verdict) {
        (Ok(seq), LocalVerdict::Unlink) => {
            Redirect::to(&format!("/app/matching/local/{person}?done={seq}")).into_response()
        }
        (Ok(seq), _) => {
            Redirect::to(&format!("/app/matching?done={seq}#local-identities")).into_response()
        }
        (Err(GatewayError::Invalid(m)), LocalVerdict::Unlink) => {
            identity_page(&state, &user, person, None, Some(sentence_case(&m))).await
        }
        (Err(GatewayError::Invalid(m)), _) => {
            queue_page(&state, &user, None, Some(sentence_case(&m))).await
        }
        (Err(e), _) => gateway_error(Layout::staff(&user), e),
    }
}
