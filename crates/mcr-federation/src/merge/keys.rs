//! What makes two items the same, across sources: a key per item, by kind of item, code and
//! period (see [`merge_key`]).

use mcr_domain::Section;

/// Items that are the same across sources share a key: same kind of item, same code, and the
/// same period (what "same period" means depends on the kind of item). Two items with one key
/// from two sources are shown once, with both sources; two from one source stay two.
pub(super) fn merge_key<J: mcr_fhir::Json>(
    section: Section,
    r: &J,
    summary: &mcr_fhir::Summary,
    code: Option<&(String, String)>,
) -> Option<String> {
    let (system, code) = code.map(|(s, c)| (s.as_str(), c.as_str()))?;
    let date = summary.date.as_deref();
    Some(match section {
        // The same drug, current, from GP and hospital is one line. A course that has ended
        // is the same only over the same period: two courses of one antibiotic years apart
        // are two courses.
        Section::Medications => {
            let current = matches!(
                summary.status.as_deref(),
                Some("active" | "intended" | "on-hold")
            );
            if current {
                ["med", system, code, "current"].join("|")
            } else {
                let end = mcr_fhir::str_at(r, &["effectivePeriod", "end"])
                    .or_else(|| mcr_fhir::str_at(r, &["dispenseRequest", "validityPeriod", "end"]));
                ["med", system, code, day(date), day(end)].join("|")
            }
        }
        Section::Allergies => ["allergy", system, code].join("|"),
        Section::Problems => ["problem", system, code, day(date)].join("|"),
        Section::Alerts => ["alert", system, code].join("|"),
        // The same decision (a DNACPR, a power of attorney) held by two sources is one line.
        Section::LegalEndOfLife => ["legal", system, code].join("|"),
        Section::Immunisations => ["imm", system, code, day(date)].join("|"),
        Section::Procedures => ["proc", system, code, day(date)].join("|"),
        // A measurement is the same if taken at the same instant, however each source writes
        // it (`Z` or `+00:00`, with or without fractions of a second); an observation and a
        // report are never one item.
        Section::Results => [
            "result",
            mcr_fhir::resource_type(r).unwrap_or_default(),
            system,
            code,
            &date.map(instant).unwrap_or_default(),
        ]
        .join("|"),
        // Encounters, appointments, referrals, documents and care items are each their own.
        Section::Encounters
        | Section::Appointments
        | Section::Referrals
        | Section::Documents
        | Section::CareTeam
        | Section::CareAndSupport => return None,
    })
}

/// Up to the day: a date's first ten characters.
fn day(d: Option<&str>) -> &str {
    d.map_or("", |d| {
        d.char_indices().nth(10).map_or(d, |(at, _)| &d[..at])
    })
}

/// A FHIR `dateTime` as the instant it names, in UTC, to compare; a date or a partial date
/// as written.
fn instant(d: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(d) {
        Ok(t) => t
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Err(_) => d.to_owned(),
    }
}
