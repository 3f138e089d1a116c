//! Normal forms used to compare demographics between sources and to search the index.

/// Upper-case letters only: `O'Brien-Smith` and `OBRIEN SMITH` compare equal.
pub fn normalise_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_uppercase)
        .collect()
}

/// Upper-case letters and digits only: `sg1 2ab` becomes `SG12AB`.
pub fn normalise_postcode(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The first line of an address (house number or name, and street) in the form matching
/// compares: letters and digits upper-cased, words one space apart, at most 100 characters
/// (`12a, High St.` is `12A HIGH ST`). Empty when nothing is left.
pub fn normalise_address_line(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| c.to_ascii_uppercase()));
        if out.len() >= 100 {
            out.truncate(100);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines() {
        assert_eq!(normalise_address_line("12a, High St."), "12A HIGH ST");
        assert_eq!(
            normalise_address_line("  flat 3 -- 4 Mill  Lane "),
            "FLAT 3 4 MILL LANE"
        );
        assert_eq!(normalise_address_line(" , "), "");
        assert_eq!(normalise_address_line(&"x".repeat(300)).len(), 100);
    }

    #[test]
    fn names_and_postcodes() {
        assert_eq!(normalise_name("O'Brien-Smith"), "OBRIENSMITH");
        assert_eq!(normalise_name(" obrien smith "), "OBRIENSMITH");
        assert_eq!(normalise_postcode("sg1 2ab"), "SG12AB");
    }
}
