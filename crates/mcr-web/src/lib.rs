//! The web layer: the FHIR R4 API under `/fhir`, the clinician viewer under `/app`, and the
//! public site. It speaks HTTP and HTML and nothing else: every use case is one call into
//! [`mcr_gateway::Gateway`], every caller is authenticated before that call, and every error
//! becomes an `OperationOutcome` (API) or an error page (HTML) that never echoes internals.
//!
//! Source data is untrusted: templates escape everything, and the pages carry a
//! Content-Security-Policy without inline script.

pub mod auth;
pub mod cis2;
mod error;
mod fhir;
pub mod health;
pub mod launch;
mod ops;
mod pages;
pub mod ratelimit;
mod refusals;
mod security;
pub mod sessions;
mod smart;
pub mod system;

pub use auth::{AuthConfig, Authenticator};
pub use error::ApiError;
pub use health::Readiness;
pub use launch::{Launcher, SmartSettings};
pub use pages::{DemoPatient, PatientAccess};
pub use ratelimit::{Rate, RateLimits};
pub use refusals::RefusalTally;
pub use sessions::SessionLimits;
pub use system::{BackendServicesConfig, SystemAccess};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use mcr_gateway::Gateway;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub gateway: Gateway,
    pub auth: Arc<Authenticator>,
    /// The URL this gateway is reached at, for `fullUrl`s and links.
    pub base_url: String,
    /// Send cookies with `Secure` and pages with HSTS (true whenever served over TLS).
    pub secure_cookies: bool,
    /// Page sessions and sign-ins in progress (server-side).
    pub sessions: Arc<sessions::Sessions>,
    pub limiter: Arc<ratelimit::RateLimiter>,
    pub rate_limits: RateLimits,
    /// How many proxies in front of the gateway append to `X-Forwarded-For` and are trusted
    /// to (0: the header is ignored). See [`auth::client_address`].
    pub trusted_proxy_hops: u8,
    /// Refusals made before the gateway, counted until they are audited in aggregate.
    pub refusals: Arc<RefusalTally>,
    /// Patient sign-in ("who viewed my record") and the patients' sessions.
    pub patients: Arc<PatientAccess>,
    /// Draining or not, and whether the store takes writes (`/readyz`).
    pub readiness: Arc<health::Readiness>,
    /// Host systems that may launch the viewer (SMART App Launch).
    pub launcher: Arc<Launcher>,
    /// Systems registered for SMART backend services, and the tokens issued to them.
    pub system: Arc<SystemAccess>,
}

impl AppState {
    /// State with default session and rate limits.
    pub fn new(
        gateway: Gateway,
        auth: Authenticator,
        base_url: String,
        secure_cookies: bool,
    ) -> Self {
        let store = gateway.store().clone();
        let clock = gateway.clock().clone();
        Self {
            gateway,
            auth: Arc::new(auth),
            readiness: Arc::new(health::Readiness::new(base_url.clone())),
            launcher: Arc::new(Launcher::none(&base_url)),
            base_url,
            secure_cookies,
            sessions: Arc::new(sessions::Sessions::new(
                SessionLimits::default(),
                store.clone(),
                clock.clone(),
            )),
            limiter: Arc::new(ratelimit::RateLimiter::new(store, clock)),
            rate_limits: RateLimits::default(),
            trusted_proxy_hops: 0,
            refusals: Arc::new(RefusalTally::default()),
            patients: Arc::new(PatientAccess::default()),
            system: Arc::new(SystemAccess::default()),
        }
    }

    /// Register these systems for SMART backend services.
    pub fn with_backend_services(mut self, system: SystemAccess) -> Self {
        self.system = Arc::new(system);
        self
    }

    /// Trust `hops` proxies' `X-Forwarded-For` entries for the client address.
    pub fn with_trusted_proxy_hops(mut self, hops: u8) -> Self {
        self.trusted_proxy_hops = hops;
        self
    }

    /// Accept SMART launches from these hosts.
    pub fn with_launcher(mut self, launcher: Launcher) -> Self {
        self.launcher = Arc::new(launcher);
        self
    }

    /// Offer the demo's patient sign-in with these sample patients (never in production).
    pub fn with_demo_patients(mut self, patients: Vec<DemoPatient>) -> Self {
        self.patients = Arc::new(PatientAccess::demo(patients));
        self
    }

    /// How patients sign in to `/my-record` (NHS login; see [`PatientAccess`]).
    pub fn with_patient_access(mut self, patients: PatientAccess) -> Self {
        self.patients = Arc::new(patients);
        self
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(health::routes())
        .merge(fhir::routes())
        .merge(smart::routes())
        .merge(ops::routes())
        .merge(pages::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::guard))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn(ops::stamp))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refusals::count,
        ))
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, ApiError> {
    state
        .gateway
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::unavailable("The gateway's store is not answering."))?;
    Ok("ok")
}
