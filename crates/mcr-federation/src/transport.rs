//! How a failed exchange with a source is said: reqwest's error as a [`FailureReason`], for
//! every kind of source and for documents alike.

use mcr_domain::FailureReason;

/// What went wrong in an exchange with a source, as the view and the audit say it.
pub(crate) fn transport_failure(e: &reqwest::Error) -> FailureReason {
    if e.is_timeout() {
        FailureReason::Timeout { after_ms: 0 }
    } else if let Some(detail) = mcr_tls::describe_tls_failure(e) {
        // A source whose certificate does not chain to the regional CA is never trusted, and
        // one that refuses our certificate cannot be asked: both are failed sources.
        FailureReason::Unreachable {
            detail: detail.into(),
        }
    } else if e.is_connect() {
        FailureReason::Unreachable {
            detail: "connection refused or failed".into(),
        }
    } else if e.is_body() || e.is_decode() {
        FailureReason::Malformed {
            detail: "the answer was cut off".into(),
        }
    } else {
        FailureReason::Unreachable {
            detail: "the connection failed".into(),
        }
    }
}
