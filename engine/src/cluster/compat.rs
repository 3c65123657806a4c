//! The original design's message format, so services that already publish it are served
//! unchanged: `{"KEY": 456, "VALUE": "text"}` on one channel, KEY a number or a string.
//!
//! wspush nodes that publish in this format (`compat_publish`) add `"WSPUSH_NODE"`: other
//! wspush nodes skip those (they get the same message as an envelope), while services of
//! the original design ignore the extra field.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A message in the original format, borrowing from the payload where it can (a VALUE with
/// JSON escapes is unescaped into an owned string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatMessage<'a> {
    /// The id (KEY), as a string: `456` and `"456"` are the same id.
    pub key: Cow<'a, str>,
    /// The text to deliver (VALUE).
    pub value: Cow<'a, str>,
    /// The wspush node that published it, if one did.
    pub origin: Option<Cow<'a, str>>,
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

/// Decodes a compat payload in one pass, without building a JSON tree.
///
/// # Errors
///
/// A [`CompatError`] naming what is wrong.
pub fn decode(payload: &[u8]) -> Result<CompatMessage<'_>, CompatError> {
    let Decoded { key, value, origin } = decode_in_place(payload)?;
    let key = match key {
        Key::Text(key) => key,
        Key::Number(n) => Cow::Owned(n.as_str().to_owned()),
    };
    Ok(CompatMessage { key, value, origin })
}

/// A compat message as the router takes it: as [`CompatMessage`], but a numeric KEY (the
/// original services' usual one) is held inline, not in a `String` of its own, which was an
/// allocation and a free per message on the way from Redis to the workers.
pub(crate) struct Decoded<'a> {
    pub key: Key<'a>,
    pub value: Cow<'a, str>,
    pub origin: Option<Cow<'a, str>>,
}

/// The KEY of a [`Decoded`] message.
pub(crate) enum Key<'a> {
    Text(Cow<'a, str>),
    Number(NumberText),
}

impl Key<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Key::Text(key) => key,
            Key::Number(n) => n.as_str(),
        }
    }
}

/// A whole number written in decimal, inline (an `i64` or a `u64` takes at most 20 bytes).
pub(crate) struct NumberText {
    len: u8,
    bytes: [u8; 20],
}

impl NumberText {
    fn new(n: impl fmt::Display) -> Self {
        use std::io::Write;
        let mut bytes = [0; 20];
        let mut rest = &mut bytes[..];
        write!(rest, "{n}").expect("a 64-bit integer fits in 20 bytes");
        let len = (20 - rest.len()) as u8;
        NumberText { len, bytes }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("written as decimal digits")
    }
}

/// [`decode`] without allocating for a numeric KEY.
pub(crate) fn decode_in_place(payload: &[u8]) -> Result<Decoded<'_>, CompatError> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let fields = deserializer.deserialize_any(FieldsVisitor).map_err(|_| CompatError::NotJson)?;
    deserializer.end().map_err(|_| CompatError::NotJson)?;
    let Fields { object, key, value, origin } = fields;
    if !object {
        return Err(CompatError::NotAnObject);
    }
    let key = match key {
        Some(Scalar::Text(key)) if crate::validate_id(&key).is_ok() => Key::Text(key),
        Some(Scalar::Integer(n)) if crate::validate_id(n.as_str()).is_ok() => Key::Number(n),
        _ => return Err(CompatError::BadKey),
    };
    let Some(Scalar::Text(value)) = value else { return Err(CompatError::BadValue) };
    let origin = match origin {
        Some(Scalar::Text(node)) => Some(node),
        _ => None,
    };
    Ok(Decoded { key, value, origin })
}

/// The fields of the top-level value; `object` is false when it was not an object.
#[derive(Default)]
struct Fields<'a> {
    object: bool,
    key: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
    origin: Option<Scalar<'a>>,
}

/// A field's value as far as the format cares: text, a whole number, or anything else.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Integer(NumberText),
    Other,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields { object: true, ..Fields::default() };
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let slot = match name.as_ref() {
                "KEY" => &mut fields.key,
                "VALUE" => &mut fields.value,
                "WSPUSH_NODE" => &mut fields.origin,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(ScalarSeed)?);
        }
        Ok(fields)
    }

    // Any other JSON value: valid JSON, not an object.
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Fields<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
    fn visit_unit<E>(self) -> Result<Fields<'de>, E> {
        Ok(Fields::default())
    }
}

struct ScalarSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar<'de>, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(text)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Integer(NumberText::new(n)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Integer(NumberText::new(n)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
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
        assert!(matches!(message.value, Cow::Borrowed(_)), "an unescaped VALUE is not copied");
        assert_eq!(decode(br#"{"KEY":-3,"VALUE":"a\u00e9"}"#).unwrap().value, "a\u{e9}");
        assert_eq!(decode(br#"{"KEY":"user-1","VALUE":""}"#).unwrap().key, "user-1");
        assert_eq!(decode(br#"{"VALUE":"x","KEY":7,"OTHER":1}"#).unwrap().key, "7");
    }

    #[test]
    fn numeric_keys_of_any_64_bit_size_are_read_whole() {
        for (payload, key) in [
            (&br#"{"KEY":-9223372036854775808,"VALUE":""}"#[..], "-9223372036854775808"),
            (br#"{"KEY":18446744073709551615,"VALUE":""}"#, "18446744073709551615"),
            (br#"{"KEY":0,"VALUE":""}"#, "0"),
        ] {
            assert_eq!(decode(payload).unwrap().key, key);
            assert_eq!(decode_in_place(payload).unwrap().key.as_str(), key);
        }
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
        assert_eq!(decode(br#"{"KEY":1,"VALUE":"x"} trailing"#), Err(CompatError::NotJson));
        assert_eq!(decode(br#""text""#), Err(CompatError::NotAnObject));
        assert_eq!(decode(br#"{"KEY":[1],"VALUE":"x"}"#), Err(CompatError::BadKey));
        assert_eq!(decode(br#"{"KEY":1,"VALUE":{"a":1},"WSPUSH_NODE":null}"#), Err(CompatError::BadValue));
    }

    #[test]
    fn writes_numeric_keys_as_numbers_and_marks_the_origin() {
        assert_eq!(encode("456", "hi", "n1"), br#"{"KEY":456,"VALUE":"hi","WSPUSH_NODE":"n1"}"#);
        assert_eq!(encode("0456", "hi", "n1"), br#"{"KEY":"0456","VALUE":"hi","WSPUSH_NODE":"n1"}"#);
        let encoded = encode("u-1", "\"quoted\"", "n1");
        let round = decode(&encoded).unwrap();
        assert_eq!(
            round,
            CompatMessage { key: "u-1".into(), value: "\"quoted\"".into(), origin: Some("n1".into()) }
        );
    }
}
