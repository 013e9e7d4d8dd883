//! Cards 卡: numbers with a Luhn check digit, PINs, kinds, forms and the life cycle
//! issued → active ⇄ frozen → replaced | closed.

use serde::{Deserialize, Serialize};

use crate::{error::FieldError, text};

/// Digits of every card number cardcrm issues (imported numbers may have 12 to 19).
pub const CARD_NUMBER_LENGTH: usize = 16;

/// The Luhn check digit of `body` (digits only).
fn luhn_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            let value = u32::from(*digit);
            if index % 2 == 0 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    ((10 - (sum % 10)) % 10) as u8
}

/// A card number: 12 to 19 digits whose last one is a Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardNumber(String);

impl CardNumber {
    /// Parses a number as people type it: spaces, dashes and full-width digits are fine.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned = text::clean(raw).unwrap_or_default();
        let digits: String = cleaned.chars().filter(|character| !matches!(character, ' ' | '-')).collect();
        let invalid = |why: &str| {
            FieldError::new(
                "card_number",
                "card_number.invalid",
                format!("`{raw}` is not a card number: {why}"),
            )
        };
        if digits.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid("it may hold digits only"));
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(invalid("it has 12 to 19 digits"));
        }
        let values: Vec<u8> = digits.bytes().map(|byte| byte - b'0').collect();
        let (body, check) = values.split_at(values.len() - 1);
        if luhn_check_digit(body) != check[0] {
            return Err(invalid("the check digit does not match (mistyped?)"));
        }
        Ok(Self(digits))
    }

    /// A number from `prefix` and random `digits`, completed with its check digit. The
    /// caller supplies the randomness.
    pub fn issue(prefix: &str, random_digits: &[u8]) -> Self {
        let mut values: Vec<u8> = prefix.bytes().filter(u8::is_ascii_digit).map(|byte| byte - b'0').collect();
        let wanted = CARD_NUMBER_LENGTH - 1;
        values.extend(random_digits.iter().map(|byte| byte % 10).take(wanted.saturating_sub(values.len())));
        values.truncate(wanted);
        while values.len() < wanted {
            values.push(0);
        }
        let check = luhn_check_digit(&values);
        values.push(check);
        Self(values.into_iter().map(|digit| char::from(b'0' + digit)).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// What staff and receipts show: the first four and the last four digits.
    pub fn masked(&self) -> String {
        mask_card_number(&self.0)
    }
}

/// `8860 **** **** 1234` for any string of digits (shorter ones keep their last four).
pub fn mask_card_number(digits: &str) -> String {
    if digits.len() < 9 {
        return format!("****{}", &digits[digits.len().saturating_sub(4)..]);
    }
    format!("{} **** **** {}", &digits[..4], &digits[digits.len() - 4..])
}

/// A card PIN: six digits, not one digit repeated and not a plain run such as 123456.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(******)")
    }
}

impl Pin {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let digits = text::clean(raw).unwrap_or_default();
        let invalid = |why: &str| FieldError::new("pin", "pin.invalid", format!("the PIN {why}"));
        if digits.len() != 6 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid("has exactly six digits"));
        }
        let bytes = digits.as_bytes();
        if bytes.iter().all(|byte| *byte == bytes[0]) {
            return Err(invalid("may not repeat one digit"));
        }
        let steps: Vec<i16> = bytes.windows(2).map(|pair| i16::from(pair[1]) - i16::from(pair[0])).collect();
        if steps.iter().all(|step| *step == 1) || steps.iter().all(|step| *step == -1) {
            return Err(invalid("may not be a run such as 123456"));
        }
        Ok(Self(digits))
    }

    /// The digits, to be hashed; never stored or logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a card product is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardKind {
    /// Carries a tier and points.
    Membership,
    /// A prepaid balance 储值卡 (and, like every card, a tier and points).
    StoredValue,
    /// A credit-card account whose records are imported from the issuer.
    Credit,
}

impl CardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Membership => "membership",
            Self::StoredValue => "stored_value",
            Self::Credit => "credit",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match text::clean(raw).unwrap_or_default().to_lowercase().as_str() {
            "membership" | "会员卡" => Ok(Self::Membership),
            "stored_value" | "储值卡" => Ok(Self::StoredValue),
            "credit" | "信用卡" => Ok(Self::Credit),
            _ => Err(FieldError::new(
                "kind",
                "card_kind.invalid",
                format!("`{raw}` is not a card kind; use membership, stored_value or credit"),
            )),
        }
    }

    pub fn holds_value(self) -> bool {
        self == Self::StoredValue
    }
}

/// Whether a card is a piece of plastic or lives in an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardForm {
    Physical,
    Virtual,
}

impl CardForm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Physical => "physical",
            Self::Virtual => "virtual",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match text::clean(raw).unwrap_or_default().to_lowercase().as_str() {
            "physical" | "实体卡" => Ok(Self::Physical),
            "virtual" | "电子卡" | "虚拟卡" => Ok(Self::Virtual),
            _ => Err(FieldError::new("form", "card_form.invalid", format!("`{raw}` is physical or virtual"))),
        }
    }
}

/// Where a card is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    /// Made, not yet handed over and activated.
    Issued,
    Active,
    /// Blocked by staff or because it was reported lost 挂失; nothing moves.
    Frozen,
    /// Superseded by a new card 补卡, which holds its balance, points and tier.
    Replaced,
    /// Ended; its remainder was refunded or forfeited.
    Closed,
}

impl CardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Active => "active",
            Self::Frozen => "frozen",
            Self::Replaced => "replaced",
            Self::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Issued, Self::Active, Self::Frozen, Self::Replaced, Self::Closed]
            .into_iter()
            .find(|status| status.as_str() == raw)
    }

    /// Whether value may be paid from the card.
    pub fn can_pay(self) -> bool {
        self == Self::Active
    }

    /// Whether value may be loaded onto the card (a top-up activates an issued card).
    pub fn can_load(self) -> bool {
        matches!(self, Self::Issued | Self::Active)
    }

    /// Whether the card is over: nothing can happen to it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Replaced | Self::Closed)
    }

    /// The status after `event`, or why the event does not apply.
    pub fn after(self, event: CardEvent) -> Result<CardStatus, CardRefusal> {
        use CardEvent::*;
        use CardStatus::*;
        match (self, event) {
            (Issued, Activate) => Ok(Active),
            (Issued | Active, Freeze) => Ok(Frozen),
            (Frozen, Unfreeze) => Ok(Active),
            (Issued | Active | Frozen, Replace) => Ok(Replaced),
            (Issued | Active | Frozen, Close) => Ok(Closed),
            (status, event) => Err(CardRefusal { status, event }),
        }
    }
}

/// Something that changes a card's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEvent {
    Activate,
    Freeze,
    Unfreeze,
    Replace,
    Close,
}

impl CardEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Freeze => "freeze",
            Self::Unfreeze => "unfreeze",
            Self::Replace => "replace",
            Self::Close => "close",
        }
    }
}

/// An event that does not apply to a card in its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardRefusal {
    pub status: CardStatus,
    pub event: CardEvent,
}

impl std::fmt::Display for CardRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a card that is {} cannot {}", self.status.as_str(), self.event.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_numbers_parse_and_catch_a_mistyped_digit() {
        let number = CardNumber::parse("4539 1488 0343 6467").unwrap();
        assert_eq!(number.as_str(), "4539148803436467");
        assert_eq!(number.last4(), "6467");
        assert_eq!(number.masked(), "4539 **** **** 6467");
        assert!(CardNumber::parse("4539 1488 0343 6468").is_err(), "check digit");
        assert!(CardNumber::parse("4539 1488 0343 6476").is_err(), "swapped digits");
        assert!(CardNumber::parse("４５３９１４８８０３４３６４６７").is_ok(), "full-width digits");
        assert!(CardNumber::parse("12345").is_err());
        assert!(CardNumber::parse("abcd").is_err());
    }

    #[test]
    fn issued_numbers_always_carry_a_valid_check_digit() {
        for seed in 0_u8..200 {
            let random: Vec<u8> =
                (0..16).map(|index| seed.wrapping_mul(31).wrapping_add(index * 7)).collect();
            let number = CardNumber::issue("8860", &random);
            assert_eq!(number.as_str().len(), CARD_NUMBER_LENGTH);
            assert!(number.as_str().starts_with("8860"));
            assert_eq!(CardNumber::parse(number.as_str()).unwrap(), number);
        }
    }

    #[test]
    fn pins_are_six_digits_and_not_trivial() {
        assert!(Pin::parse("270419").is_ok());
        for weak in ["111111", "123456", "654321", "12345", "1234567", "12a456", ""] {
            assert!(Pin::parse(weak).is_err(), "{weak}");
        }
        assert_eq!(format!("{:?}", Pin::parse("270419").unwrap()), "Pin(******)");
    }

    #[test]
    fn the_life_cycle_allows_only_its_transitions() {
        use CardEvent::*;
        use CardStatus::*;
        assert_eq!(Issued.after(Activate), Ok(Active));
        assert_eq!(Active.after(Freeze), Ok(Frozen));
        assert_eq!(Frozen.after(Unfreeze), Ok(Active));
        assert_eq!(Frozen.after(Replace), Ok(Replaced));
        assert_eq!(Active.after(Close), Ok(Closed));
        assert!(Active.after(Activate).is_err());
        assert!(Active.after(Unfreeze).is_err());
        for event in [Activate, Freeze, Unfreeze, Replace, Close] {
            assert!(Replaced.after(event).is_err());
            assert!(Closed.after(event).is_err());
        }
        assert!(Active.can_pay() && !Frozen.can_pay() && !Issued.can_pay());
        assert!(Issued.can_load() && !Frozen.can_load());
    }
}
