//! `/app/sources`: the region's source systems and what each says it can do (its
//! CapabilityStatement as last read, [`mcr_federation::capabilities`]), for any signed-in
//! member of staff. It names systems and resource types, never a patient.

use super::session::PageUser;
use super::text::human_time;
use super::{render, Layout};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(crate) struct SourceRow {
    pub id: String,
    pub organisation: String,
    pub base_url: String,
    /// `FHIR R4` or `GP Connect`.
    pub protocol: &'static str,
    /// The types configured, overriding the statement; empty: the statement decides.
    pub configured: Vec<String>,
    /// When the statement was last read, if ever.
    pub read_at: Option<String>,
    pub software: String,
    pub fhir_version: String,
    pub batch: bool,
    /// Entries of the statement passed over (no resource type name).
    pub unreadable_entries: usize,
    /// Listed and searchable by patient.
    pub searchable: Vec<String>,
    /// Listed but not searchable by patient (never asked for unless configured).
    pub not_searchable: Vec<String>,
    /// Configured but not listed as searchable: asked all the same.
    pub configured_unlisted: Vec<String>,
    /// The last attempt's failure, and when.
    pub failure: Option<String>,
    pub failures: u64,
    /// GP Connect: its capabilities are the specification's, not discovered.
    pub fixed: bool,
}

#[derive(Template)]
#[template(path = "app/sources.html")]
pub(crate) struct SourcesPage {
    pub layout: Layout,
    pub sources: Vec<SourceRow>,
}

pub(crate) async fn page(user: PageUser, State(state): State<AppState>) -> Response {
    let federation = state.gateway.federation();
    let sources = federation
        .discovered()
        .into_iter()
        .map(|(source, d)| {
            let config = source.config();
            let fixed = config.kind == mcr_gateway::SourceKind::GpConnect;
            let unreadable_entries = d
                .capabilities
                .as_ref()
                .map_or(0, |(c, _)| c.unreadable_entries);
            let (searchable, not_searchable, software, fhir_version, batch, read_at) =
                match &d.capabilities {
                    Some((c, at)) => (
                        c.types
                            .iter()
                            .filter(|(_, t)| t.by_patient)
                            .map(|(n, _)| n.clone())
                            .collect::<Vec<_>>(),
                        c.types
                            .iter()
                            .filter(|(_, t)| !t.by_patient)
                            .map(|(n, _)| n.clone())
                            .collect(),
                        c.software.clone().unwrap_or_default(),
                        c.fhir_version.clone().unwrap_or_default(),
                        c.batch,
                        Some(human_time(at)),
                    ),
                    None => (
                        Vec::new(),
                        Vec::new(),
                        String::new(),
                        String::new(),
                        false,
                        None,
                    ),
                };
            let configured_unlisted = if d.capabilities.is_some() {
                config
                    .resource_types
                    .iter()
                    .filter(|t| *t != "Patient" && !searchable.contains(t))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            SourceRow {
                id: config.id.as_str().to_owned(),
                organisation: config.organisation.name.clone(),
                base_url: config.base_url.to_string(),
                protocol: if fixed { "GP Connect" } else { "FHIR R4" },
                configured: config.resource_types.clone(),
                read_at,
                software,
                fhir_version,
                batch,
                unreadable_entries,
                searchable,
                not_searchable,
                configured_unlisted,
                failure: d
                    .failure
                    .as_ref()
                    .map(|(why, at)| format!("{why} ({})", human_time(at))),
                failures: d.failures,
                fixed,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &SourcesPage {
            layout: Layout::staff(&user),
            sources,
        },
    )
}
