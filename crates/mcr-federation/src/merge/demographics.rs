//! Demographics that disagree: what each source's Patient says of who this is, compared
//! across sources, one sentence per detail they disagree on (a wrong-patient risk, said in the
//! record's banner).

use serde_json::Value;

/// What a source's Patient says of who this is: name (family and first given, compared
/// without case, spaces or punctuation, so `O'Brien` and `OBRIEN` agree), date of birth, sex.
#[derive(Debug, Default)]
pub(super) struct Demographics {
    name: Option<(String, String)>,
    birth_date: Option<String>,
    gender: Option<String>,
}

impl Demographics {
    pub(super) fn of(p: &Value) -> Self {
        let name = p["name"]
            .as_array()
            .and_then(|names| {
                names
                    .iter()
                    .find(|n| n["use"] == "official")
                    .or_else(|| names.first())
            })
            .map(|n| {
                (
                    n["family"].as_str().unwrap_or("").to_owned(),
                    n["given"][0].as_str().unwrap_or("").to_owned(),
                )
            })
            .filter(|(f, g)| !f.is_empty() || !g.is_empty());
        Self {
            name,
            birth_date: p["birthDate"].as_str().map(str::to_owned),
            gender: p["gender"].as_str().map(str::to_owned),
        }
    }
}

/// Letters only, lower case: how names are compared.
fn letters(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One sentence per detail the sources' Patients disagree on (details a source leaves out
/// are not a disagreement).
pub(super) fn differences(said: &[(String, Demographics)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |what: &str, values: Vec<(&str, String, String)>| {
        // (organisation, as compared, as shown)
        let mut distinct: Vec<&str> = values.iter().map(|(_, k, _)| k.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            let who: Vec<String> = values
                .iter()
                .map(|(org, _, shown)| format!("{org} says {shown}"))
                .collect();
            out.push(format!(
                "The sources disagree on this patient's {what}: {}. Check that this is the right patient before acting on this record.",
                who.join("; ")
            ));
        }
    };
    compare(
        "name",
        said.iter()
            .filter_map(|(org, d)| {
                let (family, given) = d.name.as_ref()?;
                Some((
                    org.as_str(),
                    format!("{}|{}", letters(family), letters(given)),
                    format!("{given} {family}").trim().to_owned(),
                ))
            })
            .collect(),
    );
    compare(
        "date of birth",
        said.iter()
            .filter_map(|(org, d)| {
                let b = d.birth_date.clone()?;
                Some((org.as_str(), b.clone(), b))
            })
            .collect(),
    );
    compare(
        "sex",
        said.iter()
            .filter_map(|(org, d)| {
                let g = d.gender.clone()?;
                Some((org.as_str(), g.clone(), g))
            })
            .collect(),
    );
    out
}
