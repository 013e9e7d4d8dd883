//! E-mail addresses, lower-cased and checked for a plausible shape.

use crate::{error::FieldError, text};

/// A lower-cased e-mail address with one `@`, a non-empty local part and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

const LENGTH_MAX: usize = 254;

fn invalid(raw: &str, why: &str) -> FieldError {
    FieldError::new("email", "email.invalid", format!("`{raw}` is not an e-mail address: {why}"))
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let cleaned = text::clean(raw).ok_or_else(|| invalid(raw, "it is empty"))?;
        let lower = cleaned.to_lowercase();
        if lower.len() > LENGTH_MAX {
            return Err(invalid(raw, "it is longer than 254 characters"));
        }
        if lower.chars().any(|character| character.is_whitespace() || character.is_control()) {
            return Err(invalid(raw, "it contains a space"));
        }
        let (local, domain) = lower.split_once('@').ok_or_else(|| invalid(raw, "it has no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(invalid(raw, "the part before @ must have 1 to 64 characters"));
        }
        if domain.contains('@') {
            return Err(invalid(raw, "it has more than one @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|character| character.is_alphanumeric() || character == '-')
            });
        if !labels_ok {
            return Err(invalid(raw, "the domain after @ must look like example.com"));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// First character of the local part, then `***`, then the domain: `z***@example.com`.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_width_and_spaces() {
        assert_eq!(Email::parse("  Zhang.San@Example.COM ").unwrap().as_str(), "zhang.san@example.com");
        assert_eq!(Email::parse("ａｂｃ＠ｑｑ．ｃｏｍ").unwrap().as_str(), "abc@qq.com");
        assert_eq!(Email::parse("li@例子.中国").unwrap().as_str(), "li@例子.中国");
    }

    #[test]
    fn rejects_malformed() {
        for raw in ["", "abc", "a@b", "a@@b.com", "a b@c.com", "@qq.com", "a@-qq.com", "a@qq..com"] {
            assert_eq!(Email::parse(raw).unwrap_err().code, "email.invalid", "{raw}");
        }
    }

    #[test]
    fn masks_local_part() {
        assert_eq!(Email::parse("zhangsan@qq.com").unwrap().masked(), "z***@qq.com");
    }
}
