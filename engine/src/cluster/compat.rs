//! The original design's message format, so services that already publish it are served
//! unchanged: `{"KEY": 456, "VALUE": "text"}` on one channel, KEY a number or a string.
//!
//! wspush nodes that publish in this format (`compat_publish`) add `"WSPUSH_NODE"`: other
//! wspush nodes skip those (they get the same message as an envelope), while services of
//! the original design ignore the extra field.

use serde_json::{Map, Value};

/// A message in the original format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatMessage {
    /// The id (KEY), as a string: `456` and `"456"` are the same id.
    pub key: String,
    /// The text to deliver (VALUE).
    pub value: String,
    /// The wspush node that published it, if one did.
    pub origin: Option<String>,
}

/// Why a payload is not a valid compat message. Each variant is a kind of malformed
/// payload, counted and logged once per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// Not JSON at all.
    #[error("the payload is not JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("the payload is not a JSON object")]
    NotAnObject,
    /// KEY is missing, or neither a whole number nor a valid id string.
    #[error("KEY is missing or is not a number or a valid id")]
    BadKey,
    /// VALUE is missing or not a string.
    #[error("VALUE is missing or is not a string")]
    BadValue,
}

impl CompatError {
    /// A short name for counters and logs.
    pub fn kind(self) -> &'static str {
        match self {
            CompatError::NotJson => "not_json",
            CompatError::NotAnObject => "not_an_object",
            CompatError::BadKey => "bad_key",
            CompatError::BadValue => "bad_value",
        }
    }
}

/// Decodes a compat payload.
///
/// # Errors
///
/// A [`CompatError`] naming what is wrong.
pub fn decode(payload: &[u8]) -> Result<CompatMessage, CompatError> {
    let value: Value = serde_json::from_slice(payload).map_err(|_| CompatError::NotJson)?;
    let Value::Object(mut object) = value else {
        return Err(CompatError::NotAnObject);
    };
    let key = match object.remove("KEY") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(Value::String(s)) if crate::validate_id(&s).is_ok() => s,
        _ => return Err(CompatError::BadKey),
    };
    if crate::validate_id(&key).is_err() {
        return Err(CompatError::BadKey);
    }
    let Some(Value::String(value)) = object.remove("VALUE") else {
        return Err(CompatError::BadValue);
    };
    let origin = match object.remove("WSPUSH_NODE") {
        Some(Value::String(node)) => Some(node),
        _ => None,
    };
    Ok(CompatMessage { key, value, origin })
}

/// Encodes a message for `id` in the original format. KEY is written as a number when the
/// id is one (the original services parse it as a long), else as a string.
pub fn encode(id: &str, text: &str, origin: &str) -> Vec<u8> {
    let key = match id.parse::<i64>() {
        Ok(n) if n.to_string() == id => Value::from(n),
        _ => Value::from(id),
    };
    let mut object = Map::new();
    object.insert("KEY".into(), key);
    object.insert("VALUE".into(), Value::from(text));
    object.insert("WSPUSH_NODE".into(), Value::from(origin));
    serde_json::to_vec(&Value::Object(object)).expect("a JSON object of strings always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_original_services_publish() {
        let message = decode(br#"{"KEY":456,"VALUE":"aaaa"}"#).unwrap();
        assert_eq!(message, CompatMessage { key: "456".into(), value: "aaaa".into(), origin: None });
        assert_eq!(decode(br#"{"KEY":"user-1","VALUE":""}"#).unwrap().key, "user-1");
        assert_eq!(decode(br#"{"VALUE":"x","KEY":7,"OTHER":1}"#).unwrap().key, "7");
    }

    #[test]
    fn counts_each_kind_of_malformed_payload() {
        assert_eq!(decode(b"not json"), Err(CompatError::NotJson));
        assert_eq!(decode(b"[1,2]"), Err(CompatError::NotAnObject));
        assert_eq!(decode(br#"{"VALUE":"x"}"#), Err(CompatError::BadKey));
        assert_eq!(decode(br#"{"KEY":1.5,"VALUE":"x"}"#), Err(CompatError::BadKey));
        assert_eq!(decode(br#"{"KEY":"","VALUE":"x"}"#), Err(CompatError::BadKey));
        assert_eq!(decode(br#"{"KEY":"a/b","VALUE":"x"}"#), Err(CompatError::BadKey));
        assert_eq!(decode(br#"{"KEY":1}"#), Err(CompatError::BadValue));
        assert_eq!(decode(br#"{"KEY":1,"VALUE":3}"#), Err(CompatError::BadValue));
    }

    #[test]
    fn writes_numeric_keys_as_numbers_and_marks_the_origin() {
        assert_eq!(encode("456", "hi", "n1"), br#"{"KEY":456,"VALUE":"hi","WSPUSH_NODE":"n1"}"#);
        assert_eq!(encode("0456", "hi", "n1"), br#"{"KEY":"0456","VALUE":"hi","WSPUSH_NODE":"n1"}"#);
        let round = decode(&encode("u-1", "\"quoted\"", "n1")).unwrap();
        assert_eq!(
            round,
            CompatMessage { key: "u-1".into(), value: "\"quoted\"".into(), origin: Some("n1".into()) }
        );
    }
}
