//! A setting's value as a front end received it, and its conversions.
//!
//! The server reads text (flags, `WSPUSH_*` variables, scalars of the TOML file); the C ABI
//! and Java read JSON. Both go through the same conversions here, so a size, a duration or a
//! list means the same in every front end. Text is parsed leniently (`4MiB`, `yes`); JSON is
//! typed strictly (a count must be a JSON number), and a JSON string is parsed as text where
//! the setting has a text form (sizes, durations, lists).

use std::net::SocketAddr;
use std::time::Duration;

/// A raw value of one setting.
#[derive(Debug, Clone, Copy)]
pub enum RawValue<'a> {
    /// From a flag, an environment variable or a TOML file (numbers and booleans of the file
    /// arrive as their text).
    Text(&'a str),
    /// From the C ABI's JSON configuration.
    Json(&'a serde_json::Value),
}

/// A raw value with what is needed to describe it in an error.
#[derive(Clone, Copy)]
pub(crate) struct Given<'a> {
    pub raw: RawValue<'a>,
    /// Never echo a secret in an error, even one of the wrong type.
    pub secret: bool,
}

impl Given<'_> {
    /// `expected {what}, got {value}`, the value hidden if it is a secret.
    fn expected(&self, what: &str) -> String {
        let got = match self.raw {
            RawValue::Json(value) if self.secret => json_kind(value).to_owned(),
            RawValue::Json(value) => value.to_string(),
            RawValue::Text(_) if self.secret => "a value that is not one".to_owned(),
            RawValue::Text(text) => format!("`{text}`"),
        };
        format!("expected {what}, got {got}")
    }

    /// `None` for JSON `null` (the setting's "unset"), else `convert`'s result.
    pub fn nullable<T>(&self, convert: fn(&Self) -> Result<T, String>) -> Result<Option<T>, String> {
        match self.raw {
            RawValue::Json(serde_json::Value::Null) => Ok(None),
            _ => convert(self).map(Some),
        }
    }

    /// The text of a string value, or of any text value.
    fn text(&self, what: &str) -> Result<&str, String> {
        match self.raw {
            RawValue::Text(text) => Ok(text),
            RawValue::Json(serde_json::Value::String(text)) => Ok(text),
            RawValue::Json(_) => Err(self.expected(what)),
        }
    }

    /// A JSON number, or the text form parsed by `parse`.
    fn number_or_text<T>(
        &self,
        json: fn(&serde_json::Value) -> Option<T>,
        json_what: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        match self.raw {
            RawValue::Text(text) => parse(text),
            RawValue::Json(serde_json::Value::String(text)) => parse(text),
            RawValue::Json(value) => json(value).ok_or_else(|| self.expected(json_what)),
        }
    }

    /// A whole number: a JSON integer that fits `T`, or text parsed by `parse`.
    fn integer<T: TryFrom<u64>>(
        &self,
        parse: fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Result<T, String> {
        match self.raw {
            RawValue::Text(text) => parse(text),
            RawValue::Json(value) => {
                value.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| self.expected(what))
            }
        }
    }

    /// A whole number (connections, header lines, queue slots).
    pub fn count(&self) -> Result<usize, String> {
        self.integer(parse_count, "a non-negative integer")
    }

    /// A number per second, at most 4294967295.
    pub fn rate(&self) -> Result<u32, String> {
        self.integer(parse_rate, "a 32-bit non-negative integer")
    }

    /// A size in bytes: a JSON number, or text such as `1048576` or `4MiB`.
    pub fn size(&self) -> Result<usize, String> {
        self.number_or_text(
            |v| v.as_u64().and_then(|n| usize::try_from(n).ok()),
            "a non-negative integer",
            parse_size,
        )
    }

    /// A size in bytes, as `u64`.
    pub fn size_u64(&self) -> Result<u64, String> {
        self.size().map(|n| n as u64)
    }

    /// A duration: a JSON number of seconds, or text such as `25`, `25s`, `500ms` or `2m`.
    pub fn duration(&self) -> Result<Duration, String> {
        self.number_or_text(
            |v| v.as_u64().map(Duration::from_secs),
            "a non-negative integer (seconds) or a string like \"500ms\"",
            parse_duration,
        )
    }

    /// `true` or `false` (as text also yes/no, on/off, 1/0).
    pub fn bool(&self) -> Result<bool, String> {
        match self.raw {
            RawValue::Text(text) => parse_bool(text),
            RawValue::Json(value) => value.as_bool().ok_or_else(|| self.expected("true or false")),
        }
    }

    /// Any string.
    pub fn string(&self) -> Result<String, String> {
        self.text("a string").map(str::to_owned)
    }

    /// A list of strings: a JSON array, or comma-separated text. Must not be empty.
    pub fn list(&self) -> Result<Vec<String>, String> {
        match self.raw {
            RawValue::Json(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| self.expected("an array of strings"))
                })
                .collect(),
            RawValue::Json(serde_json::Value::String(text)) => parse_list(text),
            RawValue::Text(text) => parse_list(text),
            RawValue::Json(_) => Err(self.expected("an array of strings")),
        }
    }

    /// An `IP:PORT` address.
    pub fn addr(&self) -> Result<SocketAddr, String> {
        let text = self.text("a string \"IP:PORT\" or null")?;
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address like 0.0.0.0:8081, 127.0.0.1:0 or [::1]:8081"))
    }

    /// A value of a type with a text form (`disconnect`, `drop`).
    pub fn parsed<T: std::str::FromStr<Err = String>>(&self) -> Result<T, String> {
        self.text("a string")?.trim().parse()
    }
}

/// How a JSON value is described when its type is wrong.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A count (connections, header lines, queue slots).
pub fn parse_count(s: &str) -> Result<usize, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))
}

/// A number per second (messages), at most 4294967295.
pub fn parse_rate(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number up to 4294967295"))
}

/// A size in bytes: `1048576`, or with a suffix: `KiB`, `MiB`, `GiB` (x1024), `kB`, `MB`,
/// `GB` (x1000), `B`. Suffixes are case-insensitive.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("`{s}` is not a size: expected bytes like 1048576, or 1MiB, 64KiB, 1MB")),
    };
    let count: u64 =
        digits.parse().map_err(|_| format!("`{s}` is not a size: expected bytes like 1048576 or 1MiB"))?;
    count
        .checked_mul(unit_size)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A duration: whole seconds (`25`), or a whole number with a unit: `ms`, `s`, `m`, `h`
/// (`500ms`, `2m`). 0 is allowed; each setting says what 0 means.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || format!("`{s}` is not a duration: expected whole seconds like 25, or 500ms, 30s, 2m, 1h");
    let count: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per_unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    count.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(|| format!("`{s}` is too long"))
}

/// true/false, also yes/no, on/off, 1/0.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got `{s}`")),
    }
}

/// A comma-separated list; blanks around entries are dropped, and it must not be empty.
pub fn parse_list(s: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> =
        s.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect();
    if items.is_empty() {
        return Err("the list is empty".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Given<'_> {
        Given { raw: RawValue::Text(s), secret: false }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size(" 64 kib "), Ok(64 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        let json = serde_json::json!("2KiB");
        assert_eq!(Given { raw: RawValue::Json(&json), secret: false }.size(), Ok(2048));
    }

    #[test]
    fn durations_take_a_unit_and_default_to_seconds() {
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").unwrap_err().contains("is not a duration"));
        assert!(parse_duration("5 fortnights").is_err());
        let json = serde_json::json!(7);
        assert_eq!(
            Given { raw: RawValue::Json(&json), secret: false }.duration(),
            Ok(Duration::from_secs(7))
        );
    }

    #[test]
    fn json_is_typed_strictly_and_secrets_are_not_echoed() {
        let two = serde_json::json!("two");
        assert_eq!(
            Given { raw: RawValue::Json(&two), secret: false }.count(),
            Err("expected a non-negative integer, got \"two\"".into())
        );
        let number = serde_json::json!(7);
        assert_eq!(
            Given { raw: RawValue::Json(&number), secret: true }.string(),
            Err("expected a string, got a number".into())
        );
        assert_eq!(text("yes").bool(), Ok(true));
        assert_eq!(text("a, b ,").list(), Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert!(text(" , ").list().is_err());
    }
}
