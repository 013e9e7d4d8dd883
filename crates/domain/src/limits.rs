//! Limits on everything that comes from outside. One place, so documentation and checks agree.

/// Longest customer name, in characters.
pub const NAME_LENGTH_MAX: usize = 100;
/// Longest free-text field (occupation, city, address line), in characters.
pub const TEXT_LENGTH_MAX: usize = 200;
/// Longest address, in characters.
pub const ADDRESS_LENGTH_MAX: usize = 300;
/// Longest tag, in characters, and most tags on one customer.
pub const TAG_LENGTH_MAX: usize = 32;
pub const TAGS_PER_CUSTOMER_MAX: usize = 50;
/// Most preference entries and longest preference value.
pub const PREFERENCES_MAX: usize = 50;
pub const PREFERENCE_VALUE_LENGTH_MAX: usize = 200;
/// Longest external reference (an id in another system).
pub const EXTERNAL_ID_LENGTH_MAX: usize = 64;
/// Page sizes for every list.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
pub const PAGE_SIZE_MAX: u32 = 200;
/// Largest single purchase amount accepted, in minor units (100 million yuan).
pub const PURCHASE_AMOUNT_MINOR_MAX: i64 = 10_000_000_000;
/// Longest detail of a behaviour event, in bytes of JSON.
pub const EVENT_DETAIL_BYTES_MAX: usize = 4_096;
/// Most members in one unit of work of a loyalty job (expiry, tier review). A unit holds its
/// rows in memory and its transaction open while it runs.
pub const JOB_BLOCK_MEMBERS_MAX: i64 = 100_000;
/// Staff usernames and passwords.
pub const USERNAME_LENGTH_MAX: usize = 64;
pub const PASSWORD_LENGTH_MIN: usize = 10;
pub const PASSWORD_LENGTH_MAX: usize = 256;

/// A page size a caller asked for: 1 to [`PAGE_SIZE_MAX`]. Anything else is refused where
/// it comes in, so a caller never gets fewer rows than asked without being told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "u32")]
pub struct PageSize(u32);

impl PageSize {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for PageSize {
    type Error = String;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        if (1..=PAGE_SIZE_MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("a page holds 1 to {PAGE_SIZE_MAX} items, not {value}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageSize::try_from(1).unwrap().get(), 1);
        assert_eq!(PageSize::try_from(PAGE_SIZE_MAX).unwrap().get(), PAGE_SIZE_MAX);
        assert!(PageSize::try_from(0).is_err());
        assert!(PageSize::try_from(PAGE_SIZE_MAX + 1).is_err());
        assert!(serde_json::from_str::<PageSize>("201").is_err());
        assert_eq!(serde_json::from_str::<PageSize>("20").unwrap().get(), 20);
    }
}
