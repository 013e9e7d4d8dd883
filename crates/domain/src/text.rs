//! Text cleaning shared by every field: trimming, full-width to half-width, control characters.

/// Maps full-width ASCII variants (U+FF01..U+FF5E) to ASCII and the ideographic space
/// (U+3000) to a space; every other character is kept. Chinese input methods produce
/// full-width digits and letters (`１３８`, `＠`) that must compare equal to ASCII ones.
pub fn to_half_width(input: &str) -> String {
    input
        .chars()
        .map(|character| match character {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(character as u32 - 0xFEE0).unwrap_or(character),
            other => other,
        })
        .collect()
}

/// The cleaning every imported or submitted text field gets: half-width, control characters
/// removed, runs of whitespace collapsed to one space, trimmed. Returns `None` when nothing
/// is left.
pub fn clean(input: &str) -> Option<String> {
    // Most fields (codes, numbers, amounts, times, e-mails) are printable ASCII with single
    // inner spaces: nothing to change, one copy. Imports call this millions of times.
    let bytes = input.as_bytes();
    let already_clean = !bytes.is_empty()
        && bytes[0] != b' '
        && bytes[bytes.len() - 1] != b' '
        && bytes.iter().all(|byte| (b' '..=b'~').contains(byte))
        && !input.contains("  ");
    if already_clean {
        return Some(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut pending_space = false;
    for character in input.chars() {
        let character = match character {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(character as u32 - 0xFEE0).unwrap_or(character),
            other => other,
        };
        if character.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if character.is_control() || character == '\u{FEFF}' || character == '\u{200B}' {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(character);
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Number of characters (not bytes) in a string.
pub fn char_count(input: &str) -> usize {
    input.chars().count()
}

/// A code people type for a thing (a store, a card product): 1 to 32 of `A-Z 0-9 - _` after
/// cleaning, upper-cased. `what` names the thing in the message; `code` is the error code.
pub fn parse_code(raw: &str, code: &'static str, what: &str) -> Result<String, crate::FieldError> {
    let cleaned = clean(raw).unwrap_or_default().to_uppercase();
    if (1..=32).contains(&cleaned.len())
        && cleaned.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(cleaned)
    } else {
        Err(crate::FieldError::new(
            "code",
            code,
            format!("`{raw}` is not a {what} code (1 to 32 of A-Z, 0-9, - and _)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_digits_letters_and_space_become_ascii() {
        assert_eq!(to_half_width("１３８　ＡＢｃ＠"), "138 ABc@");
        assert_eq!(to_half_width("张三"), "张三");
    }

    #[test]
    fn clean_trims_collapses_and_drops_controls() {
        assert_eq!(clean("  张\u{3000}\u{3000}三 \t\n").as_deref(), Some("张 三"));
        assert_eq!(clean("\u{FEFF}abc\u{0007}").as_deref(), Some("abc"));
        assert_eq!(clean(" \u{3000} "), None);
        assert_eq!(clean("").as_deref(), None);
        assert_eq!(clean("a  b").as_deref(), Some("a b"));
        assert_eq!(clean("T0001 x").as_deref(), Some("T0001 x"));
        assert_eq!(clean(" x").as_deref(), Some("x"));
    }

    proptest::proptest! {
        /// Cleaning is idempotent and leaves no full-width characters, controls, or
        /// leading, trailing or doubled spaces.
        #[test]
        fn clean_is_idempotent_and_canonical(input in "\\PC{0,24}|[ a-z\u{3000}\u{FF10}-\u{FF5A}\t]{0,24}") {
            if let Some(once) = clean(&input) {
                proptest::prop_assert_eq!(clean(&once), Some(once.clone()));
                proptest::prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
                let full_width = '\u{FF01}'..='\u{FF5E}';
                proptest::prop_assert!(!once.chars().any(|c| c.is_control() || full_width.contains(&c)));
            }
        }
    }
}
