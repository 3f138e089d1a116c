//! NHS login: how patients sign in. NHS login is OpenID Connect with three things of its own,
//! all handled here:
//!
//! - the client authenticates at the token endpoint with a signed assertion only
//!   (`private_key_jwt`, RFC 7523: `iss` = `sub` = the client id, `aud` = the token endpoint, a
//!   fresh `jti`, five minutes' life; NHS login asks for RS512), never a shared secret;
//! - the authorization request names the vectors of trust it accepts (`vtr`, RFC 8485), e.g.
//!   `["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]`: identity proofed to P9, with a second factor;
//! - the user's identity proofing level comes back as `identity_proofing_level` (`P0`, `P5`,
//!   `P9`) and in the `vot` the sign-in met; the NHS number as `nhs_number`. Both are read
//!   from the ID token, else from the UserInfo endpoint (whose `sub` must be the ID token's).
//!
//! This module says who signed in and how well their identity was proofed; what a level may
//! see is the web layer's decision. It never logs a token, a code or the NHS number.

use crate::{
    constant_time_eq, pinned_algorithms, post_token, random_token, Authorization, ClientAuth,
    OidcConfig, OidcError, Rejection, RelyingParty, SignInOptions, TokenResponse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// `[auth.nhs_login]`: the gateway registered with NHS login as a relying party.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NhsLoginConfig {
    /// NHS login's issuer, exactly as its discovery document states it (e.g.
    /// `https://auth.login.nhs.uk`).
    pub issuer: String,
    pub client_id: String,
    /// The PEM file of the private key the client signs its assertions with (its public key is
    /// the one registered with NHS login).
    pub private_key: PathBuf,
    /// The `kid` of that key as registered, put in each assertion's header.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The assertion's algorithm: NHS login asks for `RS512`.
    #[serde(default = "default_assertion_algorithm")]
    pub assertion_algorithm: String,
    /// Scopes asked for; `openid profile` releases `nhs_number` and `identity_proofing_level`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The vectors of trust asked for, as the JSON array NHS login takes in `vtr`.
    #[serde(default = "default_vtr")]
    pub vtr: String,
    /// Algorithms the ID token may be signed with (NHS login: RS512).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Where NHS login sends the browser back; default `{base_url}/my-record/signin/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
}

fn default_assertion_algorithm() -> String {
    "RS512".into()
}

fn default_scope() -> String {
    "openid profile".into()
}

fn default_vtr() -> String {
    r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]"#.into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS512".into()]
}

/// How well NHS login proofed the user's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProofingLevel {
    /// Not proofed: an email address and phone number.
    P0,
    /// Some details checked (low level): may see general information only.
    P5,
    /// Fully proofed (medium level): may see their own record's access history and opt out.
    P9,
}

impl ProofingLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "P0" => Some(Self::P0),
            "P5" => Some(Self::P5),
            "P9" => Some(Self::P9),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::P0 => "P0",
            Self::P5 => "P5",
            Self::P9 => "P9",
        }
    }
}

/// The proofing level a vector of trust (`P9.Cp.Cd`) names.
fn vot_level(vot: &str) -> Option<ProofingLevel> {
    vot.split('.')
        .find(|c| c.starts_with('P'))
        .and_then(ProofingLevel::parse)
}

/// Who signed in with NHS login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientIdentity {
    /// NHS login's own id for the person.
    pub subject: String,
    /// `identity_proofing_level`, or the lower of it and the `vot`'s when both are given.
    pub level: ProofingLevel,
    /// `nhs_number` as given (not yet checked: the caller parses it, and says what is wrong).
    pub nhs_number: Option<String>,
}

/// Read a patient from NHS login's claims.
pub fn patient_identity(claims: &Map<String, Value>) -> Result<PatientIdentity, Rejection> {
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(Rejection::MissingClaim("sub".into())),
    };
    let claimed = match claims.get("identity_proofing_level") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(ProofingLevel::parse(s).ok_or(Rejection::BadClaim {
            claim: "identity_proofing_level",
            problem: "is not P0, P5 or P9",
        })?),
        Some(_) => {
            return Err(Rejection::BadClaim {
                claim: "identity_proofing_level",
                problem: "is not text",
            })
        }
    };
    let by_vot = claims
        .get("vot")
        .and_then(Value::as_str)
        .and_then(vot_level);
    let level = match (claimed, by_vot) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, _) => return Err(Rejection::MissingClaim("identity_proofing_level".into())),
    };
    let nhs_number = match claims.get("nhs_number") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => {
            return Err(Rejection::BadClaim {
                claim: "nhs_number",
                problem: "is not text",
            })
        }
    };
    Ok(PatientIdentity {
        subject,
        level,
        nhs_number,
    })
}

/// The relying party for NHS login.
pub struct NhsLogin {
    rp: RelyingParty,
    key: EncodingKey,
    alg: Algorithm,
    key_id: Option<String>,
    vtr: String,
}

impl std::fmt::Debug for NhsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NhsLogin")
            .field("rp", &self.rp)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl NhsLogin {
    /// NHS login for `config`: the private key is read and tried now, so a bad one stops the
    /// gateway at start, saying what is wrong. Nothing is fetched from NHS login until use.
    pub fn new(
        config: &NhsLoginConfig,
        base_url: &str,
        http: reqwest::Client,
    ) -> Result<Self, OidcError> {
        let cfg = |m: String| OidcError::Config(format!("[auth.nhs_login] {m}"));
        if config.client_id.trim().is_empty() {
            return Err(cfg("client_id is empty".into()));
        }
        let alg: Algorithm = config.assertion_algorithm.parse().map_err(|_| {
            cfg(format!(
                "unknown assertion_algorithm `{}`",
                config.assertion_algorithm
            ))
        })?;
        let pem = std::fs::read(&config.private_key).map_err(|e| {
            cfg(format!(
                "private_key {} cannot be read: {e}",
                config.private_key.display()
            ))
        })?;
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            _ => {
                return Err(cfg(format!(
                    "assertion_algorithm `{}` is not one NHS login takes (RS512)",
                    config.assertion_algorithm
                )))
            }
        }
        .map_err(|_| {
            cfg(format!(
                "private_key {} is not a PEM private key for {}",
                config.private_key.display(),
                config.assertion_algorithm
            ))
        })?;
        let vtr: Value = serde_json::from_str(&config.vtr)
            .map_err(|_| cfg(format!("vtr is not a JSON array: `{}`", config.vtr)))?;
        let vectors = vtr
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| cfg("vtr must be a JSON array of one or more vectors".into()))?;
        for v in vectors {
            if v.as_str().and_then(vot_level).is_none() {
                return Err(cfg(format!(
                    "vtr vector {v} names no proofing level (P0, P5 or P9)"
                )));
            }
        }
        if !config.scope.split_whitespace().any(|s| s == "openid") {
            return Err(cfg("scope must include `openid`".into()));
        }
        pinned_algorithms(&config.algorithms).map_err(|e| cfg(e.to_string()))?;
        let redirect_url = config.redirect_url.clone().unwrap_or_else(|| {
            format!(
                "{}/my-record/signin/callback",
                base_url.trim_end_matches('/')
            )
        });
        let oidc = OidcConfig {
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            // Never used: NHS login takes signed assertions only.
            client_secret: String::new().into(),
            redirect_url: Some(redirect_url),
            api_audience: config.client_id.clone(),
            algorithms: config.algorithms.clone(),
            scope: config.scope.clone(),
            claims: crate::ClaimNames::default(),
            cis2: None,
            nhs_login: None,
        };
        let rp = RelyingParty::new(oidc, base_url, http).map_err(|e| match e {
            OidcError::Config(m) => cfg(m),
            other => other,
        })?;
        let me = Self {
            rp,
            key,
            alg,
            key_id: config.key_id.clone(),
            vtr: config.vtr.clone(),
        };
        me.assertion("https://example.invalid/token")
            .map_err(|_| cfg("private_key cannot sign an assertion".into()))?;
        Ok(me)
    }

    pub fn redirect_url(&self) -> &str {
        self.rp.redirect_url()
    }

    /// Start a sign-in: the URL (code flow, PKCE, state, nonce, `vtr`) and what to keep.
    pub async fn begin(&self) -> Result<Authorization, OidcError> {
        let mut a = self.rp.begin_with(&SignInOptions::default()).await?;
        let mut url = url::Url::parse(&a.url)
            .map_err(|_| OidcError::Provider("authorization endpoint is not a URL".into()))?;
        url.query_pairs_mut().append_pair("vtr", &self.vtr);
        a.url = url.into();
        Ok(a)
    }

    /// A client assertion for `audience` (the token endpoint), signed now.
    fn assertion(&self, audience: &str) -> Result<String, OidcError> {
        let now = crate::keys::unix_now();
        let claims = json!({
            "iss": self.rp.config().client_id,
            "sub": self.rp.config().client_id,
            "aud": audience,
            "jti": random_token(),
            "iat": now,
            "exp": now + 300,
        });
        let mut header = Header::new(self.alg);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|_| OidcError::Config("the client assertion cannot be signed".into()))
    }

    /// Exchange the code (with its PKCE verifier), authenticating with a signed assertion.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &secrecy::SecretString,
    ) -> Result<TokenResponse, OidcError> {
        let m = self.rp.metadata().await?;
        let assertion = self.assertion(&m.token_endpoint)?;
        let body = post_token(
            &self.rp.http,
            &m.token_endpoint,
            &self.rp.config().client_id,
            ClientAuth::Assertion(&assertion),
            code,
            verifier,
            self.rp.redirect_url(),
        )
        .await?;
        serde_json::from_slice(&body)
            .map_err(|_| OidcError::Provider("token response is not valid".into()))
    }

    /// Check the ID token (signature by NHS login's published keys, issuer, audience, expiry,
    /// nonce) and read the patient: `identity_proofing_level` and `nhs_number` from the ID
    /// token, or from UserInfo when the ID token lacks them.
    pub async fn patient(
        &self,
        tokens: &TokenResponse,
        nonce: &str,
    ) -> Result<PatientIdentity, OidcError> {
        let m = self.rp.metadata().await?;
        let c = self.rp.config();
        let mut claims = self
            .rp
            .keys
            .verify(&tokens.id_token, &c.issuer, &c.client_id)
            .await?;
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(Rejection::Nonce.into()),
        }
        let wanted = ["identity_proofing_level", "nhs_number"];
        if wanted.iter().any(|k| !claims.contains_key(*k)) {
            if let (Some(url), Some(access)) = (&m.userinfo_endpoint, &tokens.access_token) {
                let info = self.rp.userinfo(url, access).await?;
                if info.get("sub") != claims.get("sub") {
                    return Err(OidcError::Provider(
                        "UserInfo is about another person than the ID token".into(),
                    ));
                }
                for k in wanted {
                    if let (false, Some(v)) = (claims.contains_key(k), info.get(k)) {
                        claims.insert(k.to_owned(), v.clone());
                    }
                }
            }
        }
        Ok(patient_identity(&claims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn the_level_is_the_claim_or_the_lower_of_it_and_the_vot() {
        let p = patient_identity(&claims(json!({
            "sub": "49f470a1", "identity_proofing_level": "P9", "vot": "P9.Cp.Cd",
            "nhs_number": "9686368973"
        })))
        .expect("reads");
        assert_eq!(p.level, ProofingLevel::P9);
        assert_eq!(p.nhs_number.as_deref(), Some("9686368973"));
        let p = patient_identity(&claims(json!({
            "sub": "x", "identity_proofing_level": "P9", "vot": "P5.Cp.Cd"
        })))
        .expect("reads");
        assert_eq!(p.level, ProofingLevel::P5, "the vector met says less");
        assert_eq!(p.nhs_number, None);
    }

    #[test]
    fn missing_or_malformed_claims_are_refused_saying_which() {
        let e = patient_identity(&claims(json!({"sub": "x", "vot": "P9.Cp.Cd"}))).unwrap_err();
        assert_eq!(e, Rejection::MissingClaim("identity_proofing_level".into()));
        let e = patient_identity(&claims(
            json!({"sub": "x", "identity_proofing_level": "P7"}),
        ))
        .unwrap_err();
        assert_eq!(e.code(), "malformed-claim");
        assert!(e.to_string().contains("identity_proofing_level"), "{e}");
        let e = patient_identity(&claims(
            json!({"sub": "x", "identity_proofing_level": "P9", "nhs_number": 9686368973_u64}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("nhs_number"), "{e}");
        let e = patient_identity(&claims(json!({"identity_proofing_level": "P9"}))).unwrap_err();
        assert_eq!(e, Rejection::MissingClaim("sub".into()));
    }

    #[test]
    fn a_bad_configuration_is_refused_saying_what() {
        let dir = std::env::temp_dir().join(format!("mcr-nhs-login-{}", random_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("key.pem");
        std::fs::write(&key, "not a key").expect("write");
        let base = NhsLoginConfig {
            issuer: "https://auth.sandpit.signin.nhs.uk".into(),
            client_id: "mcr".into(),
            private_key: key.clone(),
            key_id: None,
            assertion_algorithm: default_assertion_algorithm(),
            scope: default_scope(),
            vtr: default_vtr(),
            algorithms: default_algorithms(),
            redirect_url: None,
        };
        let err = |c: &NhsLoginConfig| {
            NhsLogin::new(c, "https://mcr.example", reqwest::Client::new())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&base).contains("is not a PEM private key"),
            "{}",
            err(&base)
        );
        let missing = NhsLoginConfig {
            private_key: dir.join("absent.pem"),
            ..base.clone()
        };
        assert!(err(&missing).contains("cannot be read"));
        let hs = NhsLoginConfig {
            assertion_algorithm: "HS256".into(),
            ..base.clone()
        };
        assert!(err(&hs).contains("not one NHS login takes"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn vectors_name_their_level() {
        assert_eq!(vot_level("P9.Cp.Cd"), Some(ProofingLevel::P9));
        assert_eq!(vot_level("P5.Cm"), Some(ProofingLevel::P5));
        assert_eq!(vot_level("Cp.Cd"), None);
    }

    /// A provider on loopback that checks the client assertion it is sent and answers with
    /// the ID token `id_token` makes from the nonce the sign-in sent.
    async fn provider(
        client_key: jsonwebtoken::DecodingKey,
        id_token: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> String {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let iss = format!("http://{}", listener.local_addr().expect("addr"));
        let (doc, jwk) = {
            use base64::Engine;
            use ring::signature::{Ed25519KeyPair, KeyPair};
            let doc =
                Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("key");
            let x =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            (
                doc,
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "p1", "alg": "EdDSA", "use": "sig"}),
            )
        };
        let signing = EncodingKey::from_ed_der(doc.as_ref());
        let nonce = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let id_token = std::sync::Arc::new(id_token);
        let (i1, i2) = (iss.clone(), iss.clone());
        let n1 = nonce.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move {
                    axum::Json(json!({"issuer": i1, "authorization_endpoint": format!("{i1}/authorize"),
                        "token_endpoint": format!("{i1}/token"), "jwks_uri": format!("{i1}/jwks")}))
                }),
            )
            .route("/jwks", get(move || async move { axum::Json(json!({"keys": [jwk]})) }))
            .route(
                "/authorize",
                get(move |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    *n1.lock().expect("lock") = q.get("nonce").cloned().unwrap_or_default();
                    "ok"
                }),
            )
            .route(
                "/token",
                post(move |f: axum::Form<std::collections::HashMap<String, String>>| async move {
                    let mut v = jsonwebtoken::Validation::new(Algorithm::ES384);
                    v.set_audience(&[format!("{i2}/token")]);
                    v.set_issuer(&["mcr"]);
                    let ok = f.get("client_assertion_type").map(String::as_str)
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                        && jsonwebtoken::decode::<Value>(
                            f.get("client_assertion").map_or("", String::as_str),
                            &client_key,
                            &v,
                        )
                        .is_ok_and(|d| d.claims["sub"] == "mcr" && d.claims["jti"].is_string());
                    if !ok {
                        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                    }
                    let n = nonce.lock().expect("lock").clone();
                    let mut h = Header::new(Algorithm::EdDSA);
                    h.kid = Some("p1".into());
                    // `"ISS"` in the claims stands for this provider's issuer.
                    let text = id_token(&n).replace("\"ISS\"", &format!("\"{i2}\""));
                    let claims: Value = serde_json::from_str(&text).expect("claims");
                    let t = jsonwebtoken::encode(&h, &claims, &signing).expect("sign");
                    (axum::http::StatusCode::OK, axum::Json(json!({"id_token": t, "token_type": "Bearer"})))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        iss
    }

    /// A P-384 client key: its PEM file and its public key.
    fn client_key(dir: &std::path::Path) -> (PathBuf, jsonwebtoken::DecodingKey) {
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, doc.as_ref(), &rng)
            .expect("key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let path = dir.join("client.pem");
        std::fs::write(
            &path,
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
        )
        .expect("write");
        let p = pair.public_key().as_ref();
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let key = jsonwebtoken::DecodingKey::from_ec_components(&enc(&p[1..49]), &enc(&p[49..97]))
            .expect("public key");
        (path, key)
    }

    /// A whole sign-in against `provider` answering with `claims(nonce)`.
    async fn sign_in(
        claims: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Result<PatientIdentity, OidcError> {
        let dir = std::env::temp_dir().join(format!("mcr-nhs-login-{}", random_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (pem, public) = client_key(&dir);
        let iss = provider(public, claims).await;
        let login = NhsLogin::new(
            &NhsLoginConfig {
                issuer: iss,
                client_id: "mcr".into(),
                private_key: pem,
                key_id: None,
                assertion_algorithm: "ES384".into(),
                scope: default_scope(),
                vtr: default_vtr(),
                algorithms: vec!["EdDSA".into()],
                redirect_url: None,
            },
            "http://127.0.0.1:1",
            reqwest::Client::new(),
        )
        .expect("configured");
        let a = login.begin().await.expect("begin");
        assert!(a.url.contains("vtr=%5B%22P9.Cp.Cd%22"), "{}", a.url);
        reqwest::get(&a.url).await.expect("authorize");
        let tokens = login.exchange("code", &a.verifier).await?;
        let _ = std::fs::remove_dir_all(&dir);
        login.patient(&tokens, &a.nonce).await
    }

    fn now() -> i64 {
        crate::keys::unix_now()
    }

    #[tokio::test]
    async fn a_signed_assertion_gets_the_tokens_and_the_id_token_is_checked() {
        let good = |exp: i64| {
            move |nonce: &str| {
                json!({"iss": "ISS", "aud": "mcr", "sub": "p", "exp": exp, "nonce": nonce,
                    "identity_proofing_level": "P9", "nhs_number": "9434765919"})
                .to_string()
            }
        };
        let p = sign_in(good(now() + 300)).await.expect("signed in");
        assert_eq!(p.level, ProofingLevel::P9);
        assert_eq!(p.nhs_number.as_deref(), Some("9434765919"));
        let e = sign_in(good(now() - 120)).await.unwrap_err();
        assert!(matches!(e, OidcError::Token(Rejection::Expired)), "{e}");
        let e = sign_in(|_: &str| {
            json!({"iss": "ISS", "aud": "mcr", "sub": "p", "exp": now() + 300,
                "nonce": "another sign-in's", "identity_proofing_level": "P9"})
            .to_string()
        })
        .await
        .unwrap_err();
        assert!(matches!(e, OidcError::Token(Rejection::Nonce)), "{e}");
    }
}
