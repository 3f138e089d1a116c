//! What an API request asks for, read from its method and path (the scope it needs, the
//! patient it names, whether it views a record), and whether a token's SMART-style scopes
//! allow it.

use axum::http::Method;

/// Whether a request views a patient's record (the merged record, as a page or `$everything`),
/// which under CIS2 needs the configured authentication assurance level.
pub fn is_record_view(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if let Some(rest) = path.strip_prefix("/app/patient/") {
        return !rest.is_empty() && !rest.contains('/');
    }
    path.strip_prefix("/fhir/Patient/")
        .is_some_and(|rest| rest.ends_with("/$everything"))
}

/// What a request needs a token's scopes to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read(&'static str),
    Write(&'static str),
}

/// The scope a request to the API needs: reads of the merged record need every resource type;
/// every write records a governance `Consent`-like record.
pub fn need_for(method: &Method, path: &str) -> Need {
    if method == Method::GET || method == Method::HEAD {
        if path.starts_with("/fhir/Patient/") && path.contains('$') {
            Need::Read("*")
        } else if path.starts_with("/fhir/Patient") {
            Need::Read("Patient")
        } else if path.starts_with("/fhir/Binary/") {
            Need::Read("Binary")
        } else if path.starts_with("/fhir/Consent") || path.starts_with("/access/") {
            Need::Read("Consent")
        } else {
            Need::Read("*")
        }
    } else {
        Need::Write("Consent")
    }
}

/// Whether SMART-style scopes (`patient/*.read`, `user/Patient.read`, `user/Consent.write`,
/// SMART v2 `user/*.rs`, `user/Consent.cu`) allow a need.
pub fn scopes_allow(scopes: &[String], need: Need) -> bool {
    scope_grants(scopes, need).is_some()
}

/// How a token's scopes allow a need: for any patient the user may see (`user/`, `system/`),
/// or only for the token's own patient (`patient/` scopes alone); `None`: not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeGrant {
    AnyPatient,
    OnePatient,
}

pub fn scope_grants(scopes: &[String], need: Need) -> Option<ScopeGrant> {
    let allows = |wanted_context: &[&str]| {
        scopes.iter().any(|s| {
            s.split_once('/')
                .is_some_and(|(c, _)| wanted_context.contains(&c))
                && one_scope_allows(s, need)
        })
    };
    if allows(&["user", "system"]) {
        Some(ScopeGrant::AnyPatient)
    } else if allows(&["patient"]) {
        Some(ScopeGrant::OnePatient)
    } else {
        None
    }
}

/// The NHS number a request is about, read from its path or query as the routes take it:
/// `/fhir/Patient/{nhs}…`, `?patient=[Patient/]{nhs}`, `?identifier=…|{nhs}`. `None`: the
/// request names no one patient (a demographic search, the audit trail, a write).
pub fn request_patient(method: &Method, uri: &axum::http::Uri) -> Option<String> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/fhir/Patient/") {
        let id = rest.split('/').next().unwrap_or("");
        return (!id.is_empty()).then(|| id.to_owned());
    }
    if let Some(rest) = path.strip_prefix("/fhir/Binary/") {
        // `{nhs}.{source}.{id}`: the patient is named first.
        let id = rest.split('.').next().unwrap_or("");
        return (!id.is_empty()).then(|| id.to_owned());
    }
    let query = uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut named = pairs.iter().filter_map(|(k, v)| match k.as_str() {
        "patient" => Some(v.strip_prefix("Patient/").unwrap_or(v).to_owned()),
        "identifier" => v.rsplit_once('|').map(|(_, n)| n.to_owned()),
        _ => None,
    });
    let first = named.next()?;
    // Only when every parameter names the same one patient, and nothing widens the search.
    let widening = pairs.iter().any(|(k, _)| {
        matches!(
            k.as_str(),
            "family" | "given" | "birthdate" | "address-postalcode"
        )
    });
    (named.all(|n| n == first) && !widening).then_some(first)
}

fn one_scope_allows(s: &str, need: Need) -> bool {
    {
        let Some((context, rest)) = s.split_once('/') else {
            return false;
        };
        if !matches!(context, "patient" | "user" | "system") {
            return false;
        }
        let Some((resource, perm)) = rest.rsplit_once('.') else {
            return false;
        };
        let (wanted, read) = match need {
            Need::Read(r) => (r, true),
            Need::Write(r) => (r, false),
        };
        let resource_ok = resource == "*" || resource == wanted;
        let perm_ok = match perm {
            "*" => true,
            "read" => read,
            "write" => !read,
            v2 if !v2.is_empty() && v2.chars().all(|c| "cruds".contains(c)) => {
                if read {
                    v2.contains('r') || v2.contains('s')
                } else {
                    v2.contains('c') || v2.contains('u')
                }
            }
            _ => false,
        };
        resource_ok && perm_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn a_request_names_its_patient_only_when_it_names_one() {
        let p = |m: Method, u: &str| request_patient(&m, &u.parse().expect("uri"));
        assert_eq!(
            p(Method::GET, "/fhir/Patient/9434765919/$everything").as_deref(),
            Some("9434765919")
        );
        assert_eq!(
            p(Method::GET, "/access/explain?patient=9434765919").as_deref(),
            Some("9434765919")
        );
        assert_eq!(
            p(Method::GET, "/fhir/Consent?patient=Patient/9434765919").as_deref(),
            Some("9434765919")
        );
        assert_eq!(
            p(
                Method::GET,
                "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C9434765919"
            )
            .as_deref(),
            Some("9434765919")
        );
        // Searches that could reach others, two different patients, writes, the audit trail.
        assert_eq!(
            p(
                Method::GET,
                "/fhir/Patient?family=Smith&birthdate=1970-01-01"
            ),
            None
        );
        assert_eq!(
            p(
                Method::GET,
                "/fhir/Patient?identifier=x%7C9434765919&family=Smith"
            ),
            None
        );
        assert_eq!(
            p(
                Method::GET,
                "/access/explain?patient=9434765919&patient=9000000009"
            ),
            None
        );
        assert_eq!(
            p(Method::POST, "/fhir/Patient/9434765919/$emergency-access"),
            None
        );
        assert_eq!(p(Method::GET, "/fhir/AuditEvent"), None);
        assert_eq!(
            scope_grants(&["patient/*.read".to_owned()], Need::Read("*")),
            Some(ScopeGrant::OnePatient)
        );
        assert_eq!(
            scope_grants(
                &["patient/*.read".to_owned(), "user/*.read".to_owned()],
                Need::Read("*")
            ),
            Some(ScopeGrant::AnyPatient)
        );
    }

    #[test]
    fn record_views_are_the_record_page_and_everything() {
        assert!(is_record_view(&Method::GET, "/app/patient/9434765919"));
        assert!(is_record_view(
            &Method::GET,
            "/fhir/Patient/9434765919/$everything"
        ));
        assert!(!is_record_view(
            &Method::GET,
            "/app/patient/9434765919/access"
        ));
        assert!(!is_record_view(&Method::POST, "/app/patient/9434765919"));
        assert!(!is_record_view(&Method::GET, "/fhir/Patient/9434765919"));
        assert!(!is_record_view(&Method::GET, "/app"));
    }

    #[test]
    fn scopes_limit_what_a_token_can_do() {
        let read_all = s(&["user/*.read"]);
        let write = s(&["user/Consent.write"]);
        assert!(scopes_allow(&read_all, Need::Read("*")));
        assert!(scopes_allow(&read_all, Need::Read("Patient")));
        assert!(!scopes_allow(&read_all, Need::Write("Consent")));
        assert!(scopes_allow(&write, Need::Write("Consent")));
        assert!(!scopes_allow(&write, Need::Read("Patient")));
        assert!(scopes_allow(&s(&["patient/*.read"]), Need::Read("*")));
        assert!(
            !scopes_allow(&s(&["user/Patient.read"]), Need::Read("*")),
            "one type does not cover the whole record"
        );
        assert!(scopes_allow(&s(&["user/*.rs"]), Need::Read("Consent")));
        assert!(scopes_allow(
            &s(&["user/Consent.cu"]),
            Need::Write("Consent")
        ));
        assert!(!scopes_allow(
            &s(&["openid", "profile", "admin/*.*", "user/*.x", "*"]),
            Need::Read("Patient")
        ));
        assert!(!scopes_allow(&[], Need::Read("Patient")));
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Scope strings of any shape never grant a write from a read scope or vice versa.
        #[test]
        fn fuzz_scopes(scopes in proptest::collection::vec("[a-z/*.A-Z]{0,24}", 0..6), path in "/[A-Za-z/$]{0,40}") {
            let get = need_for(&Method::GET, &path);
            let post = need_for(&Method::POST, &path);
            prop_assert!(matches!(get, Need::Read(_)));
            prop_assert!(matches!(post, Need::Write(_)));
            let reads_only: Vec<String> = scopes.iter().filter(|s| s.ends_with(".read")).cloned().collect();
            prop_assert!(!scopes_allow(&reads_only, Need::Write("Consent")));
            let writes_only: Vec<String> = scopes.iter().filter(|s| s.ends_with(".write")).cloned().collect();
            prop_assert!(!scopes_allow(&writes_only, get));
        }
    }

    #[test]
    fn requests_need_the_matching_scope() {
        assert_eq!(
            need_for(&Method::GET, "/fhir/Patient/9990000018/$everything"),
            Need::Read("*")
        );
        assert_eq!(
            need_for(&Method::GET, "/fhir/Patient"),
            Need::Read("Patient")
        );
        assert_eq!(
            need_for(&Method::GET, "/fhir/Consent"),
            Need::Read("Consent")
        );
        assert_eq!(
            need_for(&Method::POST, "/fhir/Consent"),
            Need::Write("Consent")
        );
        assert_eq!(
            need_for(&Method::POST, "/fhir/Patient/9990000018/$emergency-access"),
            Need::Write("Consent")
        );
    }
}
