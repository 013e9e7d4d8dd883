//! Phone numbers in one canonical form (E.164, `+8613812345678`) whatever way they were typed.

use crate::{error::FieldError, text};

/// A phone number in E.164 form. Only [`Phone::parse`] makes one, so a `Phone` is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);

const CHINA: &str = "+86";

fn invalid(raw: &str, why: &str) -> FieldError {
    FieldError::new("phone", "phone.invalid", format!("`{raw}` is not a phone number: {why}"))
}

fn is_china_mobile(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    bytes.len() == 11 && bytes[0] == b'1' && (b'3'..=b'9').contains(&bytes[1])
}

/// A mainland fixed line without its leading 0: area code (2 or 3 digits, not starting
/// with 0 or 1 except Beijing's 10) followed by a 7 or 8 digit local number.
fn is_china_landline(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    let length_ok = (9..=11).contains(&bytes.len());
    let start_ok =
        bytes.first().is_some_and(|first| (b'2'..=b'9').contains(first)) || digits.starts_with("10");
    length_ok && start_ok
}

impl Phone {
    /// Accepts mainland mobiles (`13812345678`, `138 1234 5678`, `+86 138-1234-5678`,
    /// `008613812345678`, `8613812345678`), mainland fixed lines with area code
    /// (`010-12345678`, `0755 1234 5678`) and international numbers with a `+` prefix.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned = text::clean(raw).ok_or_else(|| invalid(raw, "it is empty"))?;
        let mut digits = String::with_capacity(cleaned.len());
        let mut plus = false;
        for character in cleaned.chars() {
            match character {
                '0'..='9' => digits.push(character),
                '+' if digits.is_empty() && !plus => plus = true,
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => {
                    return Err(invalid(
                        raw,
                        "it contains a character other than digits, +, spaces, dashes, dots or brackets",
                    ));
                }
            }
        }
        let international = if plus { Some(digits.as_str()) } else { digits.strip_prefix("00") };
        if let Some(number) = international {
            if let Some(national) = number.strip_prefix("86") {
                return Self::china(raw, national);
            }
            if !(8..=15).contains(&number.len()) || number.starts_with('0') {
                return Err(invalid(
                    raw,
                    "an international number has 8 to 15 digits after the country code prefix",
                ));
            }
            return Ok(Self(format!("+{number}")));
        }
        if digits.len() == 13 && digits.starts_with("86") && is_china_mobile(&digits[2..]) {
            return Self::china(raw, &digits[2..]);
        }
        if let Some(national) = digits.strip_prefix('0') {
            return Self::china(raw, national);
        }
        Self::china(raw, &digits)
    }

    fn china(raw: &str, national: &str) -> Result<Self, FieldError> {
        if is_china_mobile(national) || is_china_landline(national) {
            Ok(Self(format!("{CHINA}{national}")))
        } else if national.starts_with('1') {
            Err(invalid(raw, "a mainland mobile number has 11 digits starting with 13 to 19"))
        } else {
            Err(invalid(raw, "a fixed line needs its area code, such as 010-12345678"))
        }
    }

    /// The canonical E.164 text, also what the blind index is computed over.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// How staff read the number: mainland numbers without `+86` (fixed lines with their
    /// leading 0), others in E.164.
    pub fn display(&self) -> String {
        match self.0.strip_prefix(CHINA) {
            Some(national) if is_china_mobile(national) => national.to_owned(),
            Some(national) => format!("0{national}"),
            None => self.0.clone(),
        }
    }

    /// The display form with the middle hidden: `138****5678`.
    pub fn masked(&self) -> String {
        let shown = self.display();
        let characters: Vec<char> = shown.chars().collect();
        let keep_end = 4.min(characters.len());
        let keep_start = 3.min(characters.len() - keep_end);
        let hidden = characters.len() - keep_start - keep_end;
        let mut out: String = characters[..keep_start].iter().collect();
        out.extend(std::iter::repeat_n('*', hidden));
        out.extend(&characters[characters.len() - keep_end..]);
        out
    }
}

impl std::fmt::Display for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainland_mobiles_in_every_spelling_agree() {
        for raw in [
            "13812345678",
            " 138 1234 5678 ",
            "138-1234-5678",
            "+86 138 1234 5678",
            "+86-13812345678",
            "008613812345678",
            "8613812345678",
            "１３８１２３４５６７８",
            "(+86) 138.1234.5678",
        ] {
            assert_eq!(Phone::parse(raw).unwrap().as_str(), "+8613812345678", "{raw}");
        }
    }

    #[test]
    fn landlines_and_international() {
        assert_eq!(Phone::parse("010-12345678").unwrap().as_str(), "+861012345678");
        assert_eq!(Phone::parse("0755 1234 5678").unwrap().as_str(), "+8675512345678");
        assert_eq!(Phone::parse("+852 9123 4567").unwrap().as_str(), "+85291234567");
        assert_eq!(Phone::parse("+1 (415) 555-2671").unwrap().as_str(), "+14155552671");
        assert_eq!(Phone::parse("010-12345678").unwrap().display(), "01012345678");
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for raw in ["", "12345", "1381234567", "138123456789", "abc", "12812345678", "+86 0101", "+1 23"] {
            let error = Phone::parse(raw).unwrap_err();
            assert_eq!(error.code, "phone.invalid", "{raw}");
        }
    }

    #[test]
    fn masks_the_middle() {
        assert_eq!(Phone::parse("13812345678").unwrap().masked(), "138****5678");
        assert_eq!(Phone::parse("+852 9123 4567").unwrap().masked(), "+85*****4567");
    }
}
