//! "Who viewed my record": a signed-in patient's access history, as a page and as a CSV file
//! to keep.

use super::SignedInPatient;
use crate::pages::text::human_time;
use crate::pages::{gateway_error, render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_gateway::{DownloadFormat, Sharing};

pub(crate) struct ViewRow {
    pub when: String,
    pub organisation: String,
    pub role: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "public/access_history.html")]
pub(crate) struct HistoryPage {
    pub layout: Layout,
    pub name: String,
    pub nhs_formatted: String,
    /// Whether an objection stands now.
    pub opted_out: bool,
    pub since: String,
    pub views: Vec<ViewRow>,
}

pub(crate) async fn history(patient: SignedInPatient, State(state): State<AppState>) -> Response {
    let nhs = patient.nhs;
    let history = match state.gateway.access_history(&nhs, None).await {
        Ok(h) => h,
        Err(e) => return gateway_error(Layout::public(), e),
    };
    let opted_out = match state.gateway.patient_sharing(&nhs).await {
        Ok(s) => s == Sharing::OptedOut,
        Err(e) => return gateway_error(Layout::public(), e),
    };
    let name = state
        .patients
        .demo
        .iter()
        .find(|p| p.nhs_number == nhs)
        .map(|p| p.label.clone())
        .unwrap_or_default();
    let page = HistoryPage {
        layout: Layout::public(),
        name,
        nhs_formatted: nhs.formatted(),
        opted_out,
        since: crate::pages::text::human_day(history.since.date_naive()),
        views: history
            .views
            .iter()
            .map(|v| ViewRow {
                when: human_time(&v.at),
                organisation: v.organisation.clone(),
                role: v.role.clone(),
                reason: v.reason.clone(),
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// The same history as a CSV file to keep.
pub(crate) async fn download(patient: SignedInPatient, State(state): State<AppState>) -> Response {
    match state.gateway.access_history(&patient.nhs, None).await {
        Ok(h) => {
            let file = h.download(DownloadFormat::Csv);
            let disposition = format!("attachment; filename=\"{}\"", file.filename);
            let mut resp = (StatusCode::OK, file.body).into_response();
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(e) => gateway_error(Layout::public(), e),
    }
}
