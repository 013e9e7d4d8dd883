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
    let half = to_half_width(input);
    let mut out = String::with_capacity(half.len());
    let mut pending_space = false;
    for character in half.chars() {
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
    }
}
