use serde::{Deserialize, Serialize};
use std::fmt;

/// A 10-digit NHS number whose modulus-11 check digit is valid.
///
/// Parsed once at the edge with [`NhsNumber::parse`]; code that holds one never re-checks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number has 10 digits; this has {0}")]
    WrongLength(usize),
    #[error("an NHS number contains only digits (spaces allowed between groups)")]
    NotDigits,
    #[error("the check digit does not match: this is not a valid NHS number")]
    BadCheckDigit,
}

impl NhsNumber {
    /// FHIR identifier system for NHS numbers.
    pub const SYSTEM: &'static str = "https://fhir.nhs.uk/Id/nhs-number";

    /// Accepts `9434765919` and `943 476 5919`.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let trimmed = input.trim();
        let mut digits = [0u8; 10];
        let mut n = 0usize;
        for c in trimmed.chars() {
            match c {
                ' ' | '-' => continue,
                '0'..='9' => {
                    if n < 10 {
                        digits[n] = c as u8 - b'0';
                    }
                    n += 1;
                }
                _ => return Err(NhsNumberError::NotDigits),
            }
        }
        if n != 10 {
            return Err(NhsNumberError::WrongLength(n));
        }
        let first9: [u8; 9] = [
            digits[0], digits[1], digits[2], digits[3], digits[4], digits[5], digits[6], digits[7],
            digits[8],
        ];
        match check_digit(&first9) {
            Some(d) if d == digits[9] => {}
            _ => return Err(NhsNumberError::BadCheckDigit),
        }
        Ok(Self(digits.iter().map(|d| char::from(b'0' + d)).collect()))
    }

    /// Completes nine digits into a valid NHS number, or `None` when no check digit exists
    /// for them (remainder 10). Used by the synthetic data generator.
    pub fn from_first_nine(first9: [u8; 9]) -> Option<Self> {
        if first9.iter().any(|d| *d > 9) {
            return None;
        }
        let check = check_digit(&first9)?;
        let mut s: String = first9.iter().map(|d| char::from(b'0' + d)).collect();
        s.push(char::from(b'0' + check));
        Some(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the range reserved for test data (starting 999).
    pub fn is_test_range(&self) -> bool {
        self.0.starts_with("999")
    }

    /// `943 476 5919`, the way it is printed for people.
    pub fn formatted(&self) -> String {
        format!("{} {} {}", &self.0[0..3], &self.0[3..6], &self.0[6..10])
    }
}

/// Modulus 11: weights 10..2 over the first nine digits; 11 - (sum mod 11), 11 becomes 0 and
/// 10 means the number is invalid.
fn check_digit(first9: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first9
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        d => u8::try_from(d).ok(),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NhsNumber {
    type Error = NhsNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<NhsNumber> for String {
    fn from(value: NhsNumber) -> Self {
        value.0
    }
}

impl std::str::FromStr for NhsNumber {
    type Err = NhsNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_valid_numbers() {
        // Published examples of valid NHS numbers.
        for n in ["9434765919", "943 476 5919", "4010232137", "9990000018"] {
            assert!(NhsNumber::parse(n).is_ok(), "{n} should be valid");
        }
        assert_eq!(
            NhsNumber::parse("943 476 5919").unwrap().as_str(),
            "9434765919"
        );
    }

    #[test]
    fn rejects_wrong_check_digit() {
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(NhsNumberError::BadCheckDigit)
        );
        assert_eq!(
            NhsNumber::parse("4010232138"),
            Err(NhsNumberError::BadCheckDigit)
        );
    }

    #[test]
    fn rejects_remainder_ten() {
        // 1000000010: weights give sum 10*1 + 2*1 = 12 -> 11 - 1 = 10 -> invalid whatever the last digit.
        for last in 0..=9 {
            let s = format!("100000001{last}");
            assert_eq!(
                NhsNumber::parse(&s),
                Err(NhsNumberError::BadCheckDigit),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(
            NhsNumber::parse("12345"),
            Err(NhsNumberError::WrongLength(5))
        );
        assert_eq!(
            NhsNumber::parse("94347659190"),
            Err(NhsNumberError::WrongLength(11))
        );
        assert_eq!(
            NhsNumber::parse("94347659x9"),
            Err(NhsNumberError::NotDigits)
        );
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::WrongLength(0)));
    }

    #[test]
    fn completes_nine_digits() {
        let n = NhsNumber::from_first_nine([9, 4, 3, 4, 7, 6, 5, 9, 1]).unwrap();
        assert_eq!(n.as_str(), "9434765919");
        assert!(NhsNumber::from_first_nine([1, 0, 0, 0, 0, 0, 0, 0, 1]).is_none());
        assert_eq!(n.formatted(), "943 476 5919");
    }

    #[test]
    fn every_completed_number_parses() {
        let mut ok = 0;
        for i in 0..2000u32 {
            let mut d = [9u8, 9, 9, 0, 0, 0, 0, 0, 0];
            let mut x = i;
            for slot in d.iter_mut().skip(3).rev() {
                *slot = u8::try_from(x % 10).unwrap();
                x /= 10;
            }
            if let Some(n) = NhsNumber::from_first_nine(d) {
                assert_eq!(NhsNumber::parse(n.as_str()).unwrap(), n);
                assert!(n.is_test_range());
                ok += 1;
            }
        }
        assert!(
            ok > 1700,
            "about 10/11 of prefixes have a check digit; got {ok}"
        );
    }
}
