use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// The subset of the FHIR `issue-type` value set we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Security,
    Login,
    Forbidden,
    NotFound,
    TooCostly,
    Transient,
    Timeout,
    Exception,
    Incomplete,
    Suppressed,
    Informational,
    NotSupported,
    Throttled,
}

impl IssueSeverity {
    fn as_str(self) -> &'static str {
        match self {
            IssueSeverity::Fatal => "fatal",
            IssueSeverity::Error => "error",
            IssueSeverity::Warning => "warning",
            IssueSeverity::Information => "information",
        }
    }
}

impl IssueType {
    fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::NotFound => "not-found",
            IssueType::TooCostly => "too-costly",
            IssueType::Transient => "transient",
            IssueType::Timeout => "timeout",
            IssueType::Exception => "exception",
            IssueType::Incomplete => "incomplete",
            IssueType::Suppressed => "suppressed",
            IssueType::Informational => "informational",
            IssueType::NotSupported => "not-supported",
            IssueType::Throttled => "throttled",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    /// A machine-readable detail code (ours), e.g. `invalid-nhs-number` or `source-timeout`.
    pub detail_code: Option<String>,
    /// Words for a person.
    pub text: String,
    /// FHIRPath-ish location, e.g. `Patient.identifier` or a source id.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: IssueType, detail_code: &str, text: impl Into<String>) -> Self {
        Self {
            severity: IssueSeverity::Error,
            code,
            detail_code: Some(detail_code.to_owned()),
            text: text.into(),
            expression: None,
        }
    }

    pub fn warning(code: IssueType, detail_code: &str, text: impl Into<String>) -> Self {
        Self {
            severity: IssueSeverity::Warning,
            ..Self::error(code, detail_code, text)
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

/// Code system for our own detail codes.
pub const DETAIL_SYSTEM: &str = "https://mycarerecord.example/fhir/CodeSystem/issue-detail";

/// An `OperationOutcome` resource.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({
                "severity": i.severity.as_str(),
                "code": i.code.as_str(),
                "diagnostics": i.text,
            });
            if let Some(d) = &i.detail_code {
                v["details"] = json!({
                    "coding": [{"system": DETAIL_SYSTEM, "code": d}],
                    "text": i.text,
                });
            }
            if let Some(e) = &i.expression {
                v["expression"] = json!([e]);
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}
