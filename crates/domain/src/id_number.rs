//! Identity document numbers. Mainland resident ID numbers (GB 11643-1999, 18 characters
//! with a check character) are fully checked and carry a birth date and gender; other
//! documents are normalised and length-checked only.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::{customer::Gender, error::FieldError, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// 居民身份证
    #[default]
    ResidentId,
    Passport,
    /// 港澳居民来往内地通行证 / 台湾居民来往大陆通行证 and similar permits
    TravelPermit,
    Other,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResidentId => "resident_id",
            Self::Passport => "passport",
            Self::TravelPermit => "travel_permit",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned = text::clean(raw).unwrap_or_default().to_lowercase();
        Ok(match cleaned.as_str() {
            "resident_id" | "身份证" | "居民身份证" | "id" | "" => Self::ResidentId,
            "passport" | "护照" => Self::Passport,
            "travel_permit" | "通行证" | "港澳通行证" | "台胞证" => Self::TravelPermit,
            "other" | "其他" => Self::Other,
            _ => {
                return Err(FieldError::new(
                    "id_kind",
                    "id_kind.invalid",
                    format!(
                        "`{raw}` is not a document kind; use resident_id, passport, travel_permit or other"
                    ),
                ));
            }
        })
    }
}

/// A normalised identity document number (upper case, no spaces) of a known kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdNumber {
    kind: IdKind,
    value: String,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARACTERS: [u8; 11] = *b"10X98765432";

fn check_character(first_seventeen: &[u8]) -> u8 {
    let sum: u32 =
        first_seventeen.iter().zip(WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    CHECK_CHARACTERS[(sum % 11) as usize]
}

fn invalid(raw: &str, why: &str) -> FieldError {
    FieldError::new("id_number", "id_number.invalid", format!("`{raw}` is not a valid ID number: {why}"))
}

impl IdNumber {
    pub fn parse(kind: IdKind, raw: &str) -> Result<Self, FieldError> {
        let cleaned: String = text::clean(raw)
            .ok_or_else(|| invalid(raw, "it is empty"))?
            .chars()
            .filter(|character| !matches!(character, ' ' | '-'))
            .collect::<String>()
            .to_uppercase();
        match kind {
            IdKind::ResidentId => Self::parse_resident(raw, &cleaned),
            _ => {
                let ok = (5..=20).contains(&cleaned.len())
                    && cleaned.chars().all(|character| character.is_ascii_alphanumeric());
                if !ok {
                    return Err(invalid(raw, "a document number has 5 to 20 letters or digits"));
                }
                Ok(Self { kind, value: cleaned })
            }
        }
    }

    fn parse_resident(raw: &str, cleaned: &str) -> Result<Self, FieldError> {
        let bytes = cleaned.as_bytes();
        let value = match bytes.len() {
            18 => {
                if !bytes[..17].iter().all(u8::is_ascii_digit) {
                    return Err(invalid(raw, "the first 17 characters must be digits"));
                }
                if bytes[17] != check_character(&bytes[..17]) {
                    return Err(invalid(raw, "the check character does not match (a digit is mistyped)"));
                }
                cleaned.to_owned()
            }
            15 => {
                // First-generation cards: two-digit year of the 1900s, no check character.
                if !bytes.iter().all(u8::is_ascii_digit) {
                    return Err(invalid(raw, "a 15-digit number has only digits"));
                }
                let mut upgraded = Vec::with_capacity(18);
                upgraded.extend_from_slice(&bytes[..6]);
                upgraded.extend_from_slice(b"19");
                upgraded.extend_from_slice(&bytes[6..]);
                let check = check_character(&upgraded);
                upgraded.push(check);
                String::from_utf8(upgraded).map_err(|_| invalid(raw, "it is not ASCII"))?
            }
            _ => {
                return Err(invalid(
                    raw,
                    "a resident ID number has 18 characters (or 15 digits for old cards)",
                ));
            }
        };
        let parsed = Self { kind: IdKind::ResidentId, value };
        if parsed.birth_date().is_none() {
            return Err(invalid(raw, "characters 7 to 14 are not a real birth date"));
        }
        Ok(parsed)
    }

    pub fn kind(&self) -> IdKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The birth date a resident ID number carries.
    pub fn birth_date(&self) -> Option<Date> {
        if self.kind != IdKind::ResidentId {
            return None;
        }
        let digits = &self.value[6..14];
        let year: i16 = digits[0..4].parse().ok()?;
        let month: i8 = digits[4..6].parse().ok()?;
        let day: i8 = digits[6..8].parse().ok()?;
        if year < 1900 {
            return None;
        }
        Date::new(year, month, day).ok()
    }

    /// The gender a resident ID number carries (17th digit: odd is male).
    pub fn gender(&self) -> Option<Gender> {
        if self.kind != IdKind::ResidentId {
            return None;
        }
        let digit = self.value.as_bytes()[16] - b'0';
        Some(if digit % 2 == 1 { Gender::Male } else { Gender::Female })
    }

    /// First three and last four characters shown: `110***********1234`.
    pub fn masked(&self) -> String {
        let characters: Vec<char> = self.value.chars().collect();
        let (start, end) = if characters.len() >= 10 { (3, 4) } else { (1, 2) };
        let mut out: String = characters[..start].iter().collect();
        out.extend(std::iter::repeat_n('*', characters.len() - start - end));
        out.extend(&characters[characters.len() - end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    // 11010519491231002X is the example number printed in GB 11643-1999.
    #[test]
    fn standard_example_parses_with_birth_date_and_gender() {
        let id = IdNumber::parse(IdKind::ResidentId, "11010519491231002x").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.birth_date(), Some(date(1949, 12, 31)));
        assert_eq!(id.gender(), Some(Gender::Female));
        assert_eq!(id.masked(), "110***********002X");
    }

    #[test]
    fn wrong_check_character_and_impossible_dates_are_rejected() {
        let error = IdNumber::parse(IdKind::ResidentId, "110105194912310021").unwrap_err();
        assert!(error.message.contains("check character"), "{}", error.message);
        // 1949-02-30 with a correct check character is still not a date.
        let mut body = b"11010519490230002".to_vec();
        body.push(check_character(&body));
        let raw = String::from_utf8(body).unwrap();
        assert!(IdNumber::parse(IdKind::ResidentId, &raw).unwrap_err().message.contains("birth date"));
        assert!(IdNumber::parse(IdKind::ResidentId, "1234").is_err());
    }

    #[test]
    fn fifteen_digit_cards_are_upgraded() {
        let id = IdNumber::parse(IdKind::ResidentId, "110105491231002").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
    }

    #[test]
    fn other_documents_are_normalised() {
        let id = IdNumber::parse(IdKind::Passport, " e1234 5678 ").unwrap();
        assert_eq!(id.as_str(), "E12345678");
        assert_eq!(id.birth_date(), None);
        assert!(IdNumber::parse(IdKind::Passport, "E1").is_err());
    }
}
