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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_postcodes() {
        assert_eq!(normalise_name("O'Brien-Smith"), "OBRIENSMITH");
        assert_eq!(normalise_name(" obrien smith "), "OBRIENSMITH");
        assert_eq!(normalise_postcode("sg1 2ab"), "SG12AB");
    }
}
