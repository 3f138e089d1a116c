//! Server-side page sessions. The browser holds only an opaque random id (cookie
//! `mcr_session`: `HttpOnly`, `SameSite=Lax` so the provider's redirect back can sign in,
//! `Secure` under TLS); the identity, its CSRF token and its clocks live here. A session ends
//! after [`SessionLimits::idle`] without a request, after [`SessionLimits::max`] in all, or at
//! sign-out. Sign-ins in progress (state, nonce, PKCE verifier) are kept here too, under a
//! second short-lived cookie, and each can be completed once.
//!
//! Sessions are in memory: a restart signs everyone out, and several gateways need sticky
//! routing (or a shared store behind this same interface).

use mcr_oidc::Identity;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most sessions (and sign-ins in progress) held at once.
const MAX_ENTRIES: usize = 200_000;
/// How long a sign-in may take at the provider.
pub const LOGIN_SECONDS: u64 = 600;

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
    created: Instant,
    last_seen: Instant,
}

/// A sign-in sent to the provider and not yet back.
#[derive(Debug)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: SecretString,
    created: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    limits: SessionLimits,
    live: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Start a session; returns its cookie id.
    pub fn create(&self, identity: Identity) -> Option<String> {
        let id = mcr_oidc::random_token();
        let now = Instant::now();
        let session = Session {
            identity,
            csrf: mcr_oidc::random_token(),
            created: now,
            last_seen: now,
        };
        let mut live = self.live.lock().ok()?;
        if live.len() >= MAX_ENTRIES {
            let limits = self.limits;
            live.retain(|_, s| alive(s, limits, now));
            if live.len() >= MAX_ENTRIES {
                return None;
            }
        }
        live.insert(id.clone(), session);
        Some(id)
    }

    /// The session for a cookie id, if it is still alive; marks it used now.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let mut live = self.live.lock().ok()?;
        let now = Instant::now();
        let s = live.get_mut(id)?;
        if !alive(s, self.limits, now) {
            live.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// End a session (sign-out).
    pub fn end(&self, id: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(id);
        }
    }

    /// Remember a sign-in in progress; returns the id for its cookie.
    pub fn begin_login(
        &self,
        state: String,
        nonce: String,
        verifier: SecretString,
    ) -> Option<String> {
        let id = mcr_oidc::random_token();
        let now = Instant::now();
        let mut pending = self.pending.lock().ok()?;
        pending.retain(|_, p| now.duration_since(p.created).as_secs() < LOGIN_SECONDS);
        if pending.len() >= MAX_ENTRIES {
            return None;
        }
        pending.insert(
            id.clone(),
            PendingLogin {
                state,
                nonce,
                verifier,
                created: now,
            },
        );
        Some(id)
    }

    /// Take a sign-in in progress: it can be completed once.
    pub fn take_login(&self, id: &str) -> Option<PendingLogin> {
        let p = self.pending.lock().ok()?.remove(id)?;
        (p.created.elapsed().as_secs() < LOGIN_SECONDS).then_some(p)
    }
}

fn alive(s: &Session, limits: SessionLimits, now: Instant) -> bool {
    now.duration_since(s.last_seen) < limits.idle && now.duration_since(s.created) < limits.max
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
            scopes: vec![],
            patient: None,
        }
    }

    #[test]
    fn sessions_end_at_sign_out_and_after_idle_or_max() {
        let s = Sessions::new(SessionLimits::default());
        let id = s.create(who()).unwrap();
        assert!(s.touch(&id).is_some());
        assert!(s.touch("nope").is_none());
        s.end(&id);
        assert!(s.touch(&id).is_none());

        let short = Sessions::new(SessionLimits {
            idle: Duration::from_millis(30),
            max: Duration::from_secs(60),
        });
        let id = short.create(who()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(short.touch(&id).is_none(), "idle timeout");

        let capped = Sessions::new(SessionLimits {
            idle: Duration::from_secs(60),
            max: Duration::from_millis(50),
        });
        let id = capped.create(who()).unwrap();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(10));
            assert!(capped.touch(&id).is_some());
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            capped.touch(&id).is_none(),
            "maximum lifetime despite activity"
        );
    }

    #[test]
    fn a_sign_in_in_progress_completes_once() {
        let s = Sessions::default();
        let id = s
            .begin_login("st".into(), "n".into(), "v".to_owned().into())
            .unwrap();
        assert_eq!(s.take_login(&id).map(|p| p.state), Some("st".into()));
        assert!(s.take_login(&id).is_none());
    }
}
