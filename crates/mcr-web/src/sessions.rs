//! Server-side page sessions. The browser holds only an opaque random id (cookie
//! `mcr_session`: `HttpOnly`, `SameSite=Lax` so the provider's redirect back can sign in,
//! `Secure` under TLS); the identity, its CSRF token and its clocks live in the store
//! ([`mcr_store::SharedStateStore`]), under a SHA-256 hash of the id, so every gateway of a
//! region knows every session and a restart signs nobody out. A session ends after
//! [`SessionLimits::idle`] without a request, after [`SessionLimits::max`] in all, or at
//! sign-out. Sign-ins in progress (state, nonce, PKCE verifier) are kept there too, under a
//! second short-lived cookie, and each can be completed once, on any gateway.
//!
//! A session once read is trusted from this gateway's memory for [`CACHE_SECONDS`]: pages
//! then cost no store round trip for it. So a sign-out on one gateway is seen by the others
//! within that time; the session's idle clock in the store moves at most that often. A store
//! that cannot be reached means nobody is signed in (the pages send people to sign in, which
//! fails with a sentence until the store is back).

use mcr_domain::Clock;
use mcr_oidc::Identity;
use mcr_store::Store;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a sign-in may take at the provider.
pub const LOGIN_SECONDS: u64 = 600;
/// How long a session read from the store is trusted from memory.
pub const CACHE_SECONDS: u64 = 5;
/// Most sessions held in the memory cache before stale ones are dropped.
const CACHE_MAX: usize = 50_000;

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            max: Duration::from_secs(10 * 60 * 60),
        }
    }
}

/// A signed-in member of staff.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    /// The synchronizer token every state-changing form must carry.
    pub csrf: String,
}

/// A signed-in patient: their NHS number and how well NHS login proofed who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSession {
    pub nhs_number: Option<mcr_domain::NhsNumber>,
    pub level: mcr_oidc::ProofingLevel,
}

/// A sign-in sent to the provider and not yet back.
#[derive(Debug)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: SecretString,
}

pub struct Sessions {
    limits: SessionLimits,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Sessions read recently, by id hash: when read, and what.
    cache: Mutex<HashMap<String, (Instant, Session)>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The store's key for a cookie id: its SHA-256, base64url. The id itself is never stored.
/// A patient session ends after this long without a request.
pub const PATIENT_IDLE: Duration = Duration::from_secs(15 * 60);
/// And after this long in any case.
pub const PATIENT_MAX: Duration = Duration::from_secs(8 * 60 * 60);

/// The store's key of a patient session: apart from staff sessions' keys.
fn patient_key(id: &str) -> String {
    id_hash(&format!("patient:{id}"))
}

pub(crate) fn id_hash(id: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(id.as_bytes()))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn encode(s: &Session) -> String {
    let i = &s.identity;
    json!({
        "user_id": i.user_id, "name": i.name, "role": i.role, "organisation": i.organisation,
        "scopes": i.scopes, "patient": i.patient, "csrf": s.csrf,
        "role_profiles": i.role_profiles, "role_profile": i.role_profile,
        "assurance": i.assurance,
    })
    .to_string()
}

fn decode(data: &str) -> Option<Session> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    Some(Session {
        identity: Identity {
            user_id: text("user_id")?,
            name: text("name")?,
            role: text("role")?,
            organisation: text("organisation")?,
            scopes: v["scopes"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            patient: text("patient"),
            role_profiles: serde_json::from_value(v["role_profiles"].clone()).unwrap_or_default(),
            role_profile: text("role_profile"),
            assurance: v["assurance"].as_u64().and_then(|n| u8::try_from(n).ok()),
        },
        csrf: text("csrf")?,
    })
}

impl Sessions {
    pub fn new(limits: SessionLimits, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            limits,
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Start a session; returns its cookie id (`None` when the store cannot keep it).
    pub async fn create(&self, identity: Identity) -> Option<String> {
        let id = mcr_oidc::random_token();
        let session = Session {
            identity,
            csrf: mcr_oidc::random_token(),
        };
        let (idle, max) = (millis(self.limits.idle), millis(self.limits.max));
        match self
            .store
            .put_session(&id_hash(&id), &encode(&session), self.now_ms(), idle, max)
            .await
        {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "a page session could not be stored: sign-in refused");
                None
            }
        }
    }

    /// The session for a cookie id, if it is still alive; marks it used now.
    pub async fn touch(&self, id: &str) -> Option<Session> {
        let key = id_hash(id);
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, s)) = cache.get(&key) {
                if at.elapsed() < Duration::from_secs(CACHE_SECONDS) {
                    return Some(s.clone());
                }
            }
        }
        let (idle, max) = (millis(self.limits.idle), millis(self.limits.max));
        let read = self
            .store
            .touch_session(&key, self.now_ms(), idle, max)
            .await;
        let session = match read {
            Ok(Some(data)) => decode(&data),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "page sessions cannot be read: treated as signed out");
                None
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            match &session {
                Some(s) => {
                    if cache.len() >= CACHE_MAX {
                        cache
                            .retain(|_, (at, _)| at.elapsed() < Duration::from_secs(CACHE_SECONDS));
                    }
                    cache.insert(key, (Instant::now(), s.clone()));
                }
                None => {
                    cache.remove(&key);
                }
            }
        }
        session
    }

    /// End a session (sign-out), on every gateway (the others within [`CACHE_SECONDS`]).
    pub async fn end(&self, id: &str) {
        let key = id_hash(id);
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&key);
        }
        if let Err(e) = self.store.end_session(&key).await {
            tracing::warn!(error = %e, "a sign-out could not be stored: the session lives until it expires");
        }
    }

    /// Start a patient's session (`/my-record`) in the same shared store as staff sessions,
    /// apart from them: its key is the hash of `patient:` and its id, so a staff cookie is
    /// never a patient's session nor the reverse. It holds the NHS number (none when NHS login
    /// gave none below P9) and the identity proofing level only. `None` when the store cannot
    /// keep it.
    pub async fn create_patient(
        &self,
        nhs: Option<&mcr_domain::NhsNumber>,
        level: mcr_oidc::ProofingLevel,
    ) -> Option<String> {
        let id = mcr_oidc::random_token();
        let data =
            json!({ "patient": nhs.map(|n| n.as_str()), "level": level.as_str() }).to_string();
        let (idle, max) = (millis(PATIENT_IDLE), millis(PATIENT_MAX));
        match self
            .store
            .put_session(&patient_key(&id), &data, self.now_ms(), idle, max)
            .await
        {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "a patient session could not be stored: sign-in refused");
                None
            }
        }
    }

    /// A live patient session (any gateway's); marks it used now. A session that names no
    /// proofing level is P0: it may see general information only.
    pub async fn touch_patient(&self, id: &str) -> Option<PatientSession> {
        let (idle, max) = (millis(PATIENT_IDLE), millis(PATIENT_MAX));
        let data = match self
            .store
            .touch_session(&patient_key(id), self.now_ms(), idle, max)
            .await
        {
            Ok(data) => data?,
            Err(e) => {
                tracing::warn!(error = %e, "patient sessions cannot be read: treated as signed out");
                return None;
            }
        };
        let v: serde_json::Value = serde_json::from_str(&data).ok()?;
        Some(PatientSession {
            nhs_number: v["patient"]
                .as_str()
                .and_then(|n| mcr_domain::NhsNumber::parse(n).ok()),
            level: v["level"]
                .as_str()
                .and_then(mcr_oidc::ProofingLevel::parse)
                .unwrap_or(mcr_oidc::ProofingLevel::P0),
        })
    }

    /// End a patient's session (sign-out), on every gateway.
    pub async fn end_patient(&self, id: &str) {
        if let Err(e) = self.store.end_session(&patient_key(id)).await {
            tracing::warn!(error = %e, "a patient sign-out could not be stored: the session lives until it expires");
        }
    }

    /// Remember a sign-in in progress; returns the id for its cookie.
    pub async fn begin_login(
        &self,
        state: String,
        nonce: String,
        verifier: SecretString,
    ) -> Option<String> {
        let id = mcr_oidc::random_token();
        let data = json!({"state": state, "nonce": nonce, "verifier": verifier.expose_secret()})
            .to_string();
        match self
            .store
            .put_login(&id_hash(&id), &data, self.now_ms(), login_ms())
            .await
        {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "a sign-in in progress could not be stored: refused");
                None
            }
        }
    }

    /// Remember another kind of sign-in in progress (a SMART launch's), as JSON; returns the
    /// id for its cookie. Taken once, within [`LOGIN_SECONDS`], by [`Self::take_pending`].
    pub async fn begin_pending(&self, data: &serde_json::Value) -> Option<String> {
        let id = mcr_oidc::random_token();
        match self
            .store
            .put_login(&id_hash(&id), &data.to_string(), self.now_ms(), login_ms())
            .await
        {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "a launch in progress could not be stored: refused");
                None
            }
        }
    }

    /// Take what [`Self::begin_pending`] kept: once.
    pub async fn take_pending(&self, id: &str) -> Option<serde_json::Value> {
        match self
            .store
            .take_login(&id_hash(id), self.now_ms(), login_ms())
            .await
        {
            Ok(d) => serde_json::from_str(&d?).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "launches in progress cannot be read");
                None
            }
        }
    }

    /// Use a host's `launch` value once, across every gateway, for `ttl`: `Some(true)` the
    /// first time, `Some(false)` for a replay, `None` when the store cannot say.
    pub async fn use_launch_once(&self, iss: &str, launch: &str, ttl: Duration) -> Option<bool> {
        let key = id_hash(&format!("{iss}\n{launch}"));
        match self.store.use_once(&key, self.now_ms(), millis(ttl)).await {
            Ok(first) => Some(first),
            Err(e) => {
                tracing::warn!(error = %e, "launch uses cannot be recorded: refused");
                None
            }
        }
    }

    /// Take a sign-in in progress: it can be completed once.
    pub async fn take_login(&self, id: &str) -> Option<PendingLogin> {
        let data = match self
            .store
            .take_login(&id_hash(id), self.now_ms(), login_ms())
            .await
        {
            Ok(d) => d?,
            Err(e) => {
                tracing::warn!(error = %e, "sign-ins in progress cannot be read");
                return None;
            }
        };
        let v: serde_json::Value = serde_json::from_str(&data).ok()?;
        Some(PendingLogin {
            state: v["state"].as_str()?.to_owned(),
            nonce: v["nonce"].as_str()?.to_owned(),
            verifier: v["verifier"].as_str()?.to_owned().into(),
        })
    }
}

fn login_ms() -> i64 {
    i64::try_from(LOGIN_SECONDS * 1000).unwrap_or(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity {
            user_id: "u".into(),
            name: "U".into(),
            role: "clinician".into(),
            organisation: "RWH01".into(),
            scopes: vec!["a".into()],
            patient: None,
            role_profiles: vec![mcr_oidc::RoleProfile {
                id: "555254240100".into(),
                org_code: "RWH01".into(),
                role_code: "S8000:G8000:R8001".into(),
                job_role: "R8001".into(),
                role_name: "Nurse Access Role".into(),
                activity_codes: vec!["B0380".into()],
            }],
            role_profile: Some("555254240100".into()),
            assurance: Some(3),
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(mcr_domain::SystemClock)
    }

    async fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        let url = format!("sqlite://{}", dir.join("s.db").display());
        mcr_store::connect_and_migrate(&url).await.expect("store")
    }

    /// A patient signed in on one gateway is signed in on another sharing the store, and
    /// signed out on both; a patient's session is never a member of staff's, nor the reverse.
    #[tokio::test]
    async fn patient_sessions_live_in_the_shared_store_apart_from_staff_sessions() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(dir.path()).await;
        let one = Sessions::new(SessionLimits::default(), store.clone(), clock());
        let other = Sessions::new(SessionLimits::default(), store.clone(), clock());
        let nhs = mcr_domain::NhsNumber::parse("9434765919").expect("nhs");
        let id = one
            .create_patient(Some(&nhs), mcr_oidc::ProofingLevel::P9)
            .await
            .expect("created");
        assert_eq!(
            other.touch_patient(&id).await,
            Some(PatientSession {
                nhs_number: Some(nhs.clone()),
                level: mcr_oidc::ProofingLevel::P9
            })
        );
        assert!(
            other.touch(&id).await.is_none(),
            "a patient's session is not staff's"
        );
        let staff = one.create(who()).await.expect("staff");
        assert!(
            other.touch_patient(&staff).await.is_none(),
            "a staff session is not a patient's"
        );
        assert!(other.touch_patient("made-up").await.is_none());
        other.end_patient(&id).await;
        assert!(one.touch_patient(&id).await.is_none(), "signed out on both");
        assert!(
            one.touch(&staff).await.is_some(),
            "staff sessions untouched"
        );
    }

    #[tokio::test]
    async fn sessions_end_at_sign_out_and_after_idle_or_max() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(dir.path()).await;
        let s = Sessions::new(SessionLimits::default(), store.clone(), clock());
        let id = s.create(who()).await.expect("created");
        let read = s.touch(&id).await.expect("alive");
        assert_eq!(read.identity, who());
        // Another gateway on the same store knows it.
        let other = Sessions::new(SessionLimits::default(), store.clone(), clock());
        assert_eq!(other.touch(&id).await.map(|x| x.csrf), Some(read.csrf));
        assert!(s.touch("nope").await.is_none());
        s.end(&id).await;
        assert!(s.touch(&id).await.is_none());

        let short = Sessions::new(
            SessionLimits {
                idle: Duration::from_millis(30),
                max: Duration::from_secs(60),
            },
            store.clone(),
            clock(),
        );
        let id = short.create(who()).await.expect("created");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(short.touch(&id).await.is_none(), "idle timeout");
    }

    #[tokio::test]
    async fn a_sign_in_in_progress_completes_once() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Sessions::new(SessionLimits::default(), store(dir.path()).await, clock());
        let id = s
            .begin_login("st".into(), "n".into(), "v".to_owned().into())
            .await
            .expect("stored");
        let p = s.take_login(&id).await.expect("taken");
        assert_eq!((p.state.as_str(), p.nonce.as_str()), ("st", "n"));
        assert_eq!(p.verifier.expose_secret(), "v");
        assert!(s.take_login(&id).await.is_none());
    }
}
