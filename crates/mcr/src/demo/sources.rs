//! The demo's simulated outside world: the four source systems over mutual TLS (the GP system
//! answering GP Connect as well, when asked), the endpoint directory the gateway finds GP
//! practices in, and the Personal Demographics Service.

use super::{DemoOptions, DemoPki, DIRECTORY_API_KEY, GATEWAY_ASID, GP_SYSTEM_ASID};
use anyhow::Context;
use mcr_domain::NhsNumber;
use mcr_sources::{Behaviour, SourceHandle};
use mcr_synth::Region;
use tokio::net::TcpListener;

/// The simulated systems, running, and how the gateway reaches each source.
pub(super) struct Simulated {
    pub sources: Vec<SourceHandle>,
    pub source_configs: Vec<mcr_federation::SourceConfig>,
    pub directory: mcr_sources::directory::DirectoryHandle,
    pub pds: mcr_sources::pds::PdsHandle,
}

/// Start each source of `region` (HTTPS with a certificate from `pki`, requiring the end
/// user's identity signed with the key whose public half is `identity_x`), the directory and
/// PDS. `gp_errors`: the GP Connect cases the GP system answers with an error. `pds_jwks`: the
/// gateway's public key, which PDS's token endpoint checks the gateway's signed JWTs against.
pub(super) async fn start(
    opts: &DemoOptions,
    region: &Region,
    pki: &DemoPki,
    identity_x: &str,
    gp_errors: &[(NhsNumber, mcr_sources::GpcError)],
    pds_jwks: serde_json::Value,
) -> anyhow::Result<Simulated> {
    let mut sources = Vec::new();
    let mut source_configs = Vec::new();
    // The endpoint directory (shaped like the Spine Directory Service FHIR API) the gateway
    // asks for each patient's registered practice's GP Connect endpoint.
    let directory_listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the directory port")?;
    let directory_url = url::Url::parse(&format!("http://{}", directory_listener.local_addr()?))
        .context("directory URL")?;
    let mut directory_entries = Vec::new();
    for slice in &region.sources {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a source port")?;
        let (_, identity) = pki.issue(
            slice.organisation.code.as_str(),
            &slice.organisation.name,
            &[],
        )?;
        let tls = mcr_sources::SourceTls {
            identity,
            client_ca: pki.roots.clone(),
            refused: Vec::new(),
        };
        let identity = mcr_sources::IdentityCheck {
            ed25519_keys: vec![identity_x.to_owned()],
            issuer: None,
            required: true,
        };
        let gp_connect = opts.gp_connect && slice.kind == mcr_synth::SourceKind::Gp;
        let options = mcr_sources::SourceOptions {
            tls: Some(tls),
            identity: Some(identity),
            gp_connect: gp_connect.then(|| mcr_sources::GpConnectOptions {
                asid: GP_SYSTEM_ASID.into(),
                errors: gp_errors
                    .iter()
                    .map(|(nhs, e)| (nhs.to_string(), *e))
                    .collect(),
            }),
        };
        let handle =
            mcr_sources::serve_with(slice.clone(), listener, Behaviour::default(), options)
                .await
                .with_context(|| format!("starting source {}", slice.id))?;
        source_configs.push(mcr_federation::SourceConfig {
            id: slice.id.clone(),
            organisation: slice.organisation.clone(),
            base_url: url::Url::parse(&handle.base_url()).context("source URL")?,
            // The practices share their letters through GP Connect Access Document (their
            // R4 interface lists none).
            resource_types: slice
                .resource_types
                .iter()
                .map(|t| (*t).to_owned())
                .chain(gp_connect.then(|| "DocumentReference".to_owned()))
                .collect(),
            batch: opts.source_batch && !gp_connect,
            kind: if gp_connect {
                mcr_federation::SourceKind::GpConnect
            } else {
                mcr_federation::SourceKind::FhirR4
            },
            gp_connect: gp_connect.then(|| mcr_federation::gpconnect::GpConnectConfig {
                ssp_prefix: None,
                consumer_asid: GATEWAY_ASID.into(),
                provider_asid: GP_SYSTEM_ASID.into(),
                directory: Some(mcr_federation::gpconnect::DirectoryConfig {
                    url: directory_url.clone(),
                    api_key: DIRECTORY_API_KEY.into(),
                    ttl_secs: 3600,
                }),
            }),
            deadline_ms: None,
            feed_timeout_secs: None,
            // A simulated source holds its records by local id and finds them whatever form
            // of patient reference it writes them with: one search per type is enough.
            patient_search: mcr_federation::PatientSearch::EveryForm,
            identifier_search: Default::default(),
        });
        if gp_connect {
            // The one GP system answers for every practice, each at its own endpoint.
            for practice in &region.gp_practices {
                directory_entries.push(mcr_sources::directory::DirectoryEntry {
                    ods: practice.code.to_string(),
                    interaction: mcr_federation::gpconnect::INTERACTION_STRUCTURED.into(),
                    address: format!(
                        "{}{}",
                        handle.base_url(),
                        mcr_sources::gpconnect::practice_path(practice.code.as_str())
                    ),
                    asid: GP_SYSTEM_ASID.into(),
                });
            }
        }
        sources.push(handle);
    }
    let directory =
        mcr_sources::directory::serve(directory_listener, directory_entries, DIRECTORY_API_KEY)
            .await
            .context("starting the endpoint directory")?;
    // The Personal Demographics Service, simulated: its demo people (one restricted, one
    // deceased, one whose old NHS number was superseded) for the index's trace, behind the
    // platform's token endpoint, which knows the gateway as an application by its API key and
    // public key.
    let pds = mcr_sources::pds::serve(
        TcpListener::bind(("127.0.0.1", 0)).await?,
        mcr_sources::pds::PdsData::demo(),
        mcr_sources::pds::PdsAccess {
            api_key: super::pds_key::API_KEY.into(),
            jwks: pds_jwks,
            clock: std::sync::Arc::new(mcr_domain::SystemClock),
        },
    )
    .await
    .context("starting the PDS simulator")?;

    Ok(Simulated {
        sources,
        source_configs,
        directory,
        pds,
    })
}
