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
/// Staff usernames and passwords.
pub const USERNAME_LENGTH_MAX: usize = 64;
pub const PASSWORD_LENGTH_MIN: usize = 10;
pub const PASSWORD_LENGTH_MAX: usize = 256;
