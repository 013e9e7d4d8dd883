//! Money: an integer count of minor units (fen) with an ISO 4217 currency. Never a float.

use serde::{Deserialize, Serialize};

use crate::{error::FieldError, text};

/// An ISO 4217 currency code, three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const CNY: Currency = Currency(*b"CNY");

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned = text::clean(raw).unwrap_or_default().to_uppercase();
        let cleaned = match cleaned.as_str() {
            "RMB" | "人民币" | "元" | "¥" | "￥" => "CNY".to_owned(),
            _ => cleaned,
        };
        let bytes = cleaned.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(FieldError::new(
                "currency",
                "currency.invalid",
                format!("`{raw}` is not a currency code such as CNY"),
            ));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in this currency's minor unit.
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"VND" | b"CLP" | b"ISK" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn invalid(raw: &str, why: &str) -> FieldError {
    FieldError::new("amount", "amount.invalid", format!("`{raw}` is not an amount: {why}"))
}

/// Parses a decimal amount written by people (`1,234.50`, `¥88`, `８８.８`) into minor units
/// of `currency`, exactly: more decimals than the currency has is an error, not a rounding.
pub fn parse_amount_minor(raw: &str, currency: Currency) -> Result<i64, FieldError> {
    let cleaned = text::clean(raw).ok_or_else(|| invalid(raw, "it is empty"))?;
    let mut value = cleaned.as_str().trim_start_matches(['¥', '￥', '$']).trim();
    value = value.strip_suffix('元').unwrap_or(value).trim();
    let (negative, value) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let digits: String = value.chars().filter(|character| *character != ',').collect();
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits.as_str(), ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid(raw, "it has no digits"));
    }
    if !whole.bytes().all(|byte| byte.is_ascii_digit()) || !fraction.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(invalid(raw, "it must be a decimal number such as 88.50"));
    }
    let exponent = currency.exponent() as usize;
    if fraction.len() > exponent {
        return Err(invalid(raw, &format!("{} has at most {exponent} decimal places", currency.as_str())));
    }
    let scale = 10_i64.pow(exponent as u32);
    let whole_value: i64 =
        if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid(raw, "it is too large"))? };
    let fraction_padded = format!("{fraction:0<exponent$}");
    let fraction_value: i64 =
        if exponent == 0 { 0 } else { fraction_padded.parse().map_err(|_| invalid(raw, "bad decimals"))? };
    let minor = whole_value
        .checked_mul(scale)
        .and_then(|value| value.checked_add(fraction_value))
        .ok_or_else(|| invalid(raw, "it is too large"))?;
    Ok(if negative { -minor } else { minor })
}

/// Formats minor units as a decimal string in the currency's exponent: `123450` → `1234.50`.
pub fn format_minor(amount_minor: i64, currency: Currency) -> String {
    let exponent = currency.exponent();
    if exponent == 0 {
        return amount_minor.to_string();
    }
    let scale = 10_i64.pow(exponent);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let absolute = amount_minor.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        absolute / scale as u64,
        absolute % scale as u64,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_amounts_exactly() {
        let cny = Currency::CNY;
        assert_eq!(parse_amount_minor("1,234.50", cny).unwrap(), 123_450);
        assert_eq!(parse_amount_minor("¥88", cny).unwrap(), 8_800);
        assert_eq!(parse_amount_minor("８８.８", cny).unwrap(), 8_880);
        assert_eq!(parse_amount_minor(".5", cny).unwrap(), 50);
        assert_eq!(parse_amount_minor("12元", cny).unwrap(), 1_200);
        assert_eq!(parse_amount_minor("-3.10", cny).unwrap(), -310);
        assert_eq!(parse_amount_minor("0.1", cny).unwrap(), 10);
        assert!(parse_amount_minor("1.234", cny).is_err());
        assert!(parse_amount_minor("1e3", cny).is_err());
        assert!(parse_amount_minor("", cny).is_err());
        assert!(parse_amount_minor("99999999999999999999", cny).is_err());
        let yen = Currency::parse("jpy").unwrap();
        assert_eq!(parse_amount_minor("500", yen).unwrap(), 500);
        assert!(parse_amount_minor("500.5", yen).is_err());
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_minor(123_450, Currency::CNY), "1234.50");
        assert_eq!(format_minor(-5, Currency::CNY), "-0.05");
        for amount in [0_i64, 1, 99, 100, 123_456_789, -42] {
            assert_eq!(
                parse_amount_minor(&format_minor(amount, Currency::CNY), Currency::CNY).unwrap(),
                amount
            );
        }
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("rmb").unwrap(), Currency::CNY);
        assert_eq!(Currency::parse("usd").unwrap().as_str(), "USD");
        assert!(Currency::parse("US").is_err());
    }
}
