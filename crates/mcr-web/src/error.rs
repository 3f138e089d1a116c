//! One error type for the API: it becomes an `OperationOutcome` with the right status, and
//! never carries internal detail.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_fhir::{operation_outcome, Issue, IssueType};
use mcr_gateway::GatewayError;
use mcr_gateway::RefusalKind;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issue: Issue,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: IssueType, detail: &str, text: impl Into<String>) -> Self {
        Self {
            status,
            issue: Issue::error(code, detail, text),
            retry_after: None,
        }
    }

    pub fn invalid(detail: &str, text: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, detail, text)
    }

    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "not-found",
            text,
        )
    }

    pub fn unauthenticated(detail: &str, text: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, IssueType::Login, detail, text)
    }

    pub fn forbidden(detail: &str, text: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, IssueType::Forbidden, detail, text)
    }

    pub fn unavailable(text: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "unavailable",
                text,
            )
        }
    }

    pub fn at(mut self, expression: &str) -> Self {
        self.issue = self.issue.at(expression);
        self
    }

    /// The words for a person (for HTML error pages).
    pub fn text(&self) -> &str {
        &self.issue.text
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooCostly,
                "body-too-large",
                format!(
                    "The request body is larger than the {} KiB allowed.",
                    crate::MAX_BODY / 1024
                ),
            );
        }
        ApiError::invalid(
            "invalid-json",
            format!("The body is not a FHIR JSON resource: {}", e.body_text()),
        )
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let text = e.to_string();
        match e {
            GatewayError::PatientNotFound => ApiError::not_found(text),
            GatewayError::Merged { .. } => {
                let mut e = ApiError::not_found(text);
                e.issue.detail_code = Some("patient-merged".into());
                e
            }
            GatewayError::Invalid(_) => ApiError::invalid("invalid-request", text),
            GatewayError::Forbidden(_) => ApiError::forbidden("forbidden", text),
            GatewayError::AuditUnavailable => {
                let mut e = ApiError::unavailable(text);
                e.issue.detail_code = Some("audit-unavailable".into());
                e
            }
            GatewayError::StoreUnavailable => {
                let mut e = ApiError::unavailable(text);
                e.issue.detail_code = Some("decision-unavailable".into());
                e
            }
            GatewayError::TooManyPatients {
                retry_after_secs, ..
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    IssueType::Throttled,
                    "too-many-patients",
                    text,
                )
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = operation_outcome(std::slice::from_ref(&self.issue)).to_string();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, mcr_fhir::FHIR_JSON)],
            body,
        )
            .into_response();
        if self.issue.detail_code.as_deref() == Some("invalid-nhs-number") {
            resp.extensions_mut()
                .insert(crate::refusals::Refused(RefusalKind::InvalidNhsNumber));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
