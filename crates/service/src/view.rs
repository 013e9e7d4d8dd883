//! What the service layer hands out: serialisable views, pages with opaque cursors.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use cardcrm_domain::limits;
use serde::Serialize;

use crate::error::ServiceError;

/// One page of a list and where the next one starts (absent on the last page).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_overfetch(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        let next_cursor = if more { rows.last().map(cursor_of) } else { None };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, convert: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(convert).collect(), next_cursor: self.next_cursor }
    }
}

/// A requested page size, defaulted and capped.
pub fn page_limit(requested: u32) -> i64 {
    let size = if requested == 0 { limits::PAGE_SIZE_DEFAULT } else { requested.min(limits::PAGE_SIZE_MAX) };
    i64::from(size)
}

pub fn cursor_encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text.as_bytes())
}

pub fn cursor_decode(cursor: &str) -> Result<String, ServiceError> {
    URL_SAFE_NO_PAD.decode(cursor.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(
        || ServiceError::invalid("cursor", "cursor.invalid", "the cursor is not one this server gave out"),
    )
}

pub fn cursor_encode_id(id: i64) -> String {
    cursor_encode(&format!("i:{id}"))
}

pub fn cursor_decode_id(cursor: &str) -> Result<i64, ServiceError> {
    cursor_decode(cursor)?.strip_prefix("i:").and_then(|id| id.parse().ok()).ok_or_else(|| {
        ServiceError::invalid("cursor", "cursor.invalid", "the cursor is not one this server gave out")
    })
}

/// Cursor of a time-ordered list: `(epoch ms, rank, id)`.
pub fn cursor_encode_moment(at_ms: i64, rank: u8, id: i64) -> String {
    cursor_encode(&format!("t:{at_ms}:{rank}:{id}"))
}

pub fn cursor_decode_moment(cursor: &str) -> Result<(i64, u8, i64), ServiceError> {
    let text = cursor_decode(cursor)?;
    let parts: Vec<&str> = text.strip_prefix("t:").unwrap_or("").split(':').collect();
    match parts.as_slice() {
        [at, rank, id] => match (at.parse(), rank.parse(), id.parse()) {
            (Ok(at), Ok(rank), Ok(id)) => Ok((at, rank, id)),
            _ => Err(ServiceError::invalid(
                "cursor",
                "cursor.invalid",
                "the cursor is not one this server gave out",
            )),
        },
        _ => Err(ServiceError::invalid(
            "cursor",
            "cursor.invalid",
            "the cursor is not one this server gave out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(cursor_decode_id(&cursor_encode_id(42)).unwrap(), 42);
        assert_eq!(cursor_decode_moment(&cursor_encode_moment(5, 1, 9)).unwrap(), (5, 1, 9));
        assert!(cursor_decode_id("not base64!").is_err());
        assert!(cursor_decode_id(&cursor_encode("x:1")).is_err());
    }

    #[test]
    fn pages_know_when_there_is_more() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::from_overfetch(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
        assert_eq!(page_limit(0), 50);
        assert_eq!(page_limit(10_000), 200);
    }
}
