//! A simulated endpoint directory in the shape of the NHS Spine Directory Service FHIR API:
//! `GET /Endpoint` and `GET /Device`, each searched by `organization` (an ODS code) and
//! `identifier` (the service interaction id), answering a `searchset` Bundle of `Endpoint`
//! resources (the `address`) or `Device` resources (the `nhsSpineASID`). Requests without the
//! `apikey` header are refused, as the real API refuses them.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const INTERACTION_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhsServiceInteractionId";

/// One organisation's endpoint for one interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub ods: String,
    pub interaction: String,
    pub address: String,
    pub asid: String,
}

struct Directory {
    entries: Vec<DirectoryEntry>,
    api_key: String,
}

/// A running directory. Dropping it leaves it running until the runtime ends; call `stop`.
#[derive(Debug)]
pub struct DirectoryHandle {
    pub addr: SocketAddr,
    searches: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DirectoryHandle {
    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Searches answered so far (`Endpoint` and `Device` each count).
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Serve `entries` on `listener`, accepting requests whose `apikey` header is `api_key`.
pub async fn serve(
    listener: TcpListener,
    entries: Vec<DirectoryEntry>,
    api_key: &str,
) -> std::io::Result<DirectoryHandle> {
    let addr = listener.local_addr()?;
    let searches = Arc::new(AtomicU64::new(0));
    let state = Arc::new(Directory {
        entries,
        api_key: api_key.to_owned(),
    });
    let counter = Arc::clone(&searches);
    let app = axum::Router::new()
        .route("/{resource}", get(search))
        .with_state((state, counter));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "directory stopped");
        }
    });
    Ok(DirectoryHandle {
        addr,
        searches,
        task,
    })
}

fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    (
        status,
        [("content-type", "application/fhir+json")],
        json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": code, "diagnostics": diagnostics}]})
        .to_string(),
    )
        .into_response()
}

type Shared = (Arc<Directory>, Arc<AtomicU64>);

async fn search(
    State((s, counter)): State<Shared>,
    Path(resource): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(s.api_key.as_str()) {
        return outcome(
            StatusCode::UNAUTHORIZED,
            "forbidden",
            "missing or invalid apikey",
        );
    }
    if resource != "Endpoint" && resource != "Device" {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "unknown resource type",
        );
    }
    let value_of = |name: &str, system: &str| {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .find_map(|(_, v)| v.strip_prefix(system)?.strip_prefix('|'))
            .map(str::to_owned)
    };
    let (Some(ods), Some(interaction)) = (
        value_of("organization", ODS_SYSTEM),
        value_of("identifier", INTERACTION_SYSTEM),
    ) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "organization and identifier (service interaction id) are required",
        );
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let found: Vec<Value> = s
        .entries
        .iter()
        .filter(|e| e.ods == ods && e.interaction == interaction)
        .map(|e| {
            let resource = if resource == "Endpoint" {
                json!({
                    "resourceType": "Endpoint", "id": format!("{}-endpoint", e.ods),
                    "status": "active",
                    "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-rest"},
                    "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "any"}]}],
                    "address": e.address,
                    "managingOrganization": {"identifier": {"system": ODS_SYSTEM, "value": e.ods}},
                    "extension": [{"url": "https://fhir.nhs.uk/StructureDefinition/Extension-SDS-NhsServiceInteractionId",
                        "valueReference": {"identifier": {"system": INTERACTION_SYSTEM, "value": e.interaction}}}],
                })
            } else {
                json!({
                    "resourceType": "Device", "id": format!("{}-device", e.ods),
                    "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": e.asid},
                        {"system": "https://fhir.nhs.uk/Id/nhsEndpointServiceId", "value": e.interaction}],
                    "owner": {"identifier": {"system": ODS_SYSTEM, "value": e.ods}},
                })
            };
            json!({"resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    (
        StatusCode::OK,
        [("content-type", "application/fhir+json")],
        json!({"resourceType": "Bundle", "type": "searchset", "total": found.len(), "entry": found})
            .to_string(),
    )
        .into_response()
}
