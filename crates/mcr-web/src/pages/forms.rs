//! Form validation in the design system's error summary pattern: each error names the field
//! it belongs to (the summary links to it, the field shows it), and what the user typed is
//! kept and shown again.

use chrono::{Datelike, NaiveDate};

/// One error: the id of the field to link to, and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn list(&self) -> &[FieldError] {
        &self.0
    }

    /// The first error for a field, for the message next to it.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }
}

/// Longest value we keep from any single text field.
pub(crate) const MAX_FIELD: usize = 5_000;

/// Trim, drop control characters (except newlines and tabs) and cap the length of a field as
/// typed, so that what we show back is what the user meant and nothing more.
pub(crate) fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .take(MAX_FIELD)
        .collect()
}

/// A date typed into the three-field date pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateProblem {
    /// Some parts typed but not all: names the first missing part.
    Incomplete(&'static str),
    /// Not a real date (letters, 31 February, a two-digit year…).
    NotReal,
    /// Today or later, for a date of birth.
    InFuture,
    /// Before 1880: almost certainly a typing mistake.
    TooOld,
}

impl DateProblem {
    /// The message in the NHS design system's words, for a field called `what`.
    pub fn message(self, what: &str) -> String {
        match self {
            DateProblem::Incomplete(part) => format!("{what} must include a {part}"),
            DateProblem::NotReal => format!("{what} must be a real date"),
            DateProblem::InFuture => format!("{what} must be in the past"),
            DateProblem::TooOld => format!("{what} must be after 1880"),
        }
    }

    /// Which of the three inputs to link the error to.
    pub fn field_suffix(self) -> &'static str {
        match self {
            DateProblem::Incomplete(part) => part,
            _ => "day",
        }
    }
}

/// Parse a date of birth from day, month and year fields, relative to `today`.
/// `Ok(None)` when all three are empty.
pub(crate) fn parse_birth_date(
    day: &str,
    month: &str,
    year: &str,
    today: NaiveDate,
) -> Result<Option<NaiveDate>, DateProblem> {
    let (d, m, y) = (day.trim(), month.trim(), year.trim());
    if d.is_empty() && m.is_empty() && y.is_empty() {
        return Ok(None);
    }
    for (part, v) in [("day", d), ("month", m), ("year", y)] {
        if v.is_empty() {
            return Err(DateProblem::Incomplete(part));
        }
    }
    let num = |s: &str, max_len: usize| -> Result<u32, DateProblem> {
        if s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DateProblem::NotReal);
        }
        s.parse().map_err(|_| DateProblem::NotReal)
    };
    let (dn, mn) = (num(d, 2)?, num(m, 2)?);
    if y.len() != 4 {
        return Err(DateProblem::NotReal);
    }
    let yn = i32::try_from(num(y, 4)?).map_err(|_| DateProblem::NotReal)?;
    let date = NaiveDate::from_ymd_opt(yn, mn, dn).ok_or(DateProblem::NotReal)?;
    if date >= today {
        return Err(DateProblem::InFuture);
    }
    if date.year() < 1880 {
        return Err(DateProblem::TooOld);
    }
    Ok(Some(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap_or_default()
    }

    #[test]
    fn birth_dates_parse_per_the_date_pattern() {
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Result<Option<NaiveDate>, DateProblem>,
        );
        let cases: &[Case<'_>] = &[
            ("", "", "", Ok(None)),
            ("  ", "", " ", Ok(None)),
            ("1", "2", "1980", Ok(NaiveDate::from_ymd_opt(1980, 2, 1))),
            ("01", "02", "1980", Ok(NaiveDate::from_ymd_opt(1980, 2, 1))),
            ("29", "2", "2024", Ok(NaiveDate::from_ymd_opt(2024, 2, 29))),
            ("29", "2", "2023", Err(DateProblem::NotReal)),
            ("31", "4", "1980", Err(DateProblem::NotReal)),
            ("1", "13", "1980", Err(DateProblem::NotReal)),
            ("0", "1", "1980", Err(DateProblem::NotReal)),
            ("a", "1", "1980", Err(DateProblem::NotReal)),
            ("1", "1", "80", Err(DateProblem::NotReal)),
            ("1", "1", "-980", Err(DateProblem::NotReal)),
            ("100", "1", "1980", Err(DateProblem::NotReal)),
            ("", "1", "1980", Err(DateProblem::Incomplete("day"))),
            ("1", "", "1980", Err(DateProblem::Incomplete("month"))),
            ("1", "1", "", Err(DateProblem::Incomplete("year"))),
            ("1", "6", "2026", Err(DateProblem::InFuture)),
            ("2", "6", "2030", Err(DateProblem::InFuture)),
            ("31", "5", "2026", Ok(NaiveDate::from_ymd_opt(2026, 5, 31))),
            ("1", "1", "1879", Err(DateProblem::TooOld)),
        ];
        for (d, m, y, want) in cases {
            assert_eq!(parse_birth_date(d, m, y, today()), *want, "{d}/{m}/{y}");
        }
    }

    #[test]
    fn messages_follow_the_design_system() {
        assert_eq!(
            DateProblem::Incomplete("month").message("Date of birth"),
            "Date of birth must include a month"
        );
        assert_eq!(
            DateProblem::NotReal.message("Date of birth"),
            "Date of birth must be a real date"
        );
        assert_eq!(
            DateProblem::InFuture.message("Date of birth"),
            "Date of birth must be in the past"
        );
        assert_eq!(DateProblem::Incomplete("year").field_suffix(), "year");
        assert_eq!(DateProblem::NotReal.field_suffix(), "day");
    }

    #[test]
    fn errors_find_their_field() {
        let mut e = Errors::default();
        assert!(e.is_empty());
        e.add("nhs", "NHS number must be 10 digits");
        assert_eq!(e.get("nhs"), Some("NHS number must be 10 digits"));
        assert!(!e.has("family"));
    }

    #[test]
    fn cleaning_drops_controls_and_caps() {
        assert_eq!(clean("  a\u{0}b\nc  "), "ab\nc");
        assert_eq!(clean(&"x".repeat(5000)).len(), MAX_FIELD);
    }
}
