//! Client-controlled text in log lines. An id is percent-decoded from the upgrade path, so
//! it can hold CR, LF or terminal escape sequences; written as it is, it would start a log
//! line of the client's choosing. Every log field holding such text goes through
//! [`Escaped`].

use std::fmt;

/// Displays a string with control characters (and quotes, backslashes, non-printable
/// Unicode) escaped as Rust escapes them (`\r`, `\n`, `\u{1b}`), so it stays on its line:
/// `tracing::debug!(id = %Escaped(id), ...)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.escape_debug(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_escape_sequences_are_escaped() {
        assert_eq!(Escaped("a\r\nFAKE line").to_string(), r"a\r\nFAKE line");
        assert_eq!(Escaped("\u{1b}[31mred\t\0").to_string(), r"\u{1b}[31mred\t\0");
        assert_eq!(Escaped("456").to_string(), "456");
        assert_eq!(Escaped("Zoë 🙂").to_string(), "Zoë 🙂");
    }
}
