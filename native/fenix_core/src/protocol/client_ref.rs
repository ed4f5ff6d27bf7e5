//! The `ref` and `join_ref` of client messages: whatever JSON value the client chose.
//!
//! Phoenix keeps both as the terms its JSON library decoded and echoes them back as
//! they came: the phoenix npm client sends strings (`"5"`), many small clients (Python,
//! embedded, game engines) send numbers (`5`), and a client may send `null`, a boolean,
//! an array or an object. A [`ClientRef`] keeps that value so that every reply carries
//! the same JSON back (a number stays a number), and compares as a value: the stale
//! `join_ref` check tells `1` from `"1"` and from `1.0`, as Elixir's `===` does.
//!
//! Strings, the common case, are kept unescaped, exactly as a decoded `String` is, so
//! that they cost no more than a plain string ref. Any other value is kept as its JSON
//! text in serde_json's canonical form (object keys sorted, numbers as serde_json writes
//! them), so that equal values have equal text. `null` is no `ClientRef`: a missing ref
//! is `None`, as everywhere else in the message model.
//!
//! Binary frames (2.0.0) carry refs as strings with a one-byte length: a client's refs
//! there are strings; a number or boolean ref goes out as its text (`5` as `"5"`, as
//! Phoenix's `to_string/1` writes it); an array or object has no such text (Phoenix's
//! `to_string/1` raises for it), so a binary frame cannot carry it.
//!
//! Integers beyond 64 bits come back as serde_json's nearest float (Phoenix keeps them
//! exact): no client uses such refs.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::json::write_str;

/// A client's `ref` or `join_ref`: any JSON value but `null`, kept as it came.
///
/// ```
/// use fenix_core::protocol::{ClientRef, Serializer};
/// // The phoenix npm client's string refs, and a Python client's integer refs (vsn 1.0.0).
/// let js = Serializer::V2.decode_text(br#"["3","5","room:lobby","echo",{}]"#).unwrap();
/// assert_eq!(js.r#ref, Some(ClientRef::from("5")));
/// let py = Serializer::V1.decode_text(br#"{"event":"echo","topic":"room:lobby","ref":5,"payload":{}}"#).unwrap();
/// assert_eq!(py.r#ref, ClientRef::from_json("5").unwrap());
/// assert_ne!(py.r#ref, js.r#ref, "5 is not \"5\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientRef(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// A JSON string, unescaped.
    Str(Box<str>),
    /// A number, boolean, array or object, as canonical JSON text. Never a string, so
    /// that two refs are equal exactly when their values are.
    Json(Box<str>),
}

impl ClientRef {
    /// The ref of a decoded JSON value; `None` for `null`.
    ///
    /// ```
    /// use fenix_core::protocol::ClientRef;
    /// use serde_json::json;
    /// assert_eq!(ClientRef::from_value(json!("5")), Some(ClientRef::from("5")));
    /// assert_eq!(ClientRef::from_value(json!(null)), None);
    /// assert_eq!(ClientRef::from_value(json!({"b": 1, "a": [2]})).unwrap().to_json(), r#"{"a":[2],"b":1}"#);
    /// ```
    pub fn from_value(value: Value) -> Option<ClientRef> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(ClientRef(Repr::Str(s.into_boxed_str()))),
            other => Some(ClientRef(Repr::Json(other.to_string().into_boxed_str()))),
        }
    }

    /// The ref of a JSON text, in any spacing or key order; `None` for `null`.
    ///
    /// ```
    /// use fenix_core::protocol::ClientRef;
    /// assert_eq!(ClientRef::from_json(r#" {"b": 1, "a": 2} "#)?, ClientRef::from_json(r#"{"a":2,"b":1}"#)?);
    /// assert_eq!(ClientRef::from_json("null")?, None);
    /// assert!(ClientRef::from_json("[1,").is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Option<ClientRef>, serde_json::Error> {
        serde_json::from_str(text).map(ClientRef::from_value)
    }

    /// The ref's string, if it is a JSON string.
    ///
    /// ```
    /// use fenix_core::protocol::ClientRef;
    /// assert_eq!(ClientRef::from("5").as_str(), Some("5"));
    /// assert_eq!(ClientRef::from_json("5").unwrap().unwrap().as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Str(s) => Some(s),
            Repr::Json(_) => None,
        }
    }

    /// The ref as a JSON value.
    ///
    /// ```
    /// use fenix_core::protocol::ClientRef;
    /// use serde_json::json;
    /// assert_eq!(ClientRef::from_json("[1,\"a\"]").unwrap().unwrap().to_value(), json!([1, "a"]));
    /// ```
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Repr::Str(s) => Value::String(s.to_string()),
            Repr::Json(json) => serde_json::from_str(json).expect("a ref's JSON text was written by serde_json"),
        }
    }

    /// The ref as JSON text.
    ///
    /// ```
    /// use fenix_core::protocol::ClientRef;
    /// assert_eq!(ClientRef::from("a\"b").to_json(), r#""a\"b""#);
    /// assert_eq!(ClientRef::from_json("1.50").unwrap().unwrap().to_json(), "1.5");
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// Appends the ref as JSON.
    pub(super) fn write_json(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Str(s) => write_str(out, s),
            Repr::Json(json) => out.extend_from_slice(json.as_bytes()),
        }
    }

    /// The ref as a binary frame's header field: a string as it is, a number or boolean
    /// as its JSON text; `None` for an array or object, which have no such text.
    pub(super) fn binary_field(&self) -> Option<&str> {
        match &self.0 {
            Repr::Str(s) => Some(s),
            Repr::Json(json) if json.starts_with(['[', '{']) => None,
            Repr::Json(json) => Some(json),
        }
    }
}

/// Appends `value` as JSON, or `null`.
pub(super) fn write_opt_ref(out: &mut Vec<u8>, value: Option<&ClientRef>) {
    match value {
        Some(r) => r.write_json(out),
        None => out.extend_from_slice(b"null"),
    }
}

impl From<&str> for ClientRef {
    fn from(s: &str) -> ClientRef {
        ClientRef(Repr::Str(s.into()))
    }
}

impl From<String> for ClientRef {
    fn from(s: String) -> ClientRef {
        ClientRef(Repr::Str(s.into_boxed_str()))
    }
}

/// Any JSON value but `null` (wrap it in an `Option` to take `null` too).
impl<'de> Deserialize<'de> for ClientRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClientRef, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ClientRef::from_value(value).ok_or_else(|| serde::de::Error::custom("a ref may not be null here"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> ClientRef {
        ClientRef::from_json(text).expect("JSON").expect("not null")
    }

    #[test]
    fn equal_values_are_equal_refs_and_other_values_are_not() {
        assert_eq!(parsed(r#"{"a":1,"b":[true,null]}"#), parsed(r#"{ "b": [true, null], "a": 1 }"#));
        assert_eq!(parsed("1.0"), parsed("1.00"));
        assert_eq!(parsed(r#""\u0031""#), ClientRef::from("1"));
        // Elixir's `===`: an integer is not a float nor a string.
        assert_ne!(parsed("1"), parsed("1.0"));
        assert_ne!(parsed("1"), ClientRef::from("1"));
        assert_ne!(parsed("true"), ClientRef::from("true"));
        assert_ne!(parsed("[1]"), parsed("1"));
    }

    #[test]
    fn keeps_the_json_of_every_kind_of_value() {
        for text in [r#""5""#, "0", "5", "-7", "18446744073709551615", "2.5", "true", "false", "[1,\"a\"]", r#"{"a":{"b":[]}}"#] {
            assert_eq!(parsed(text).to_json(), text);
            assert_eq!(parsed(text).to_value(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
        assert_eq!(ClientRef::from("tab\there").to_json(), r#""tab\there""#);
    }

    #[test]
    fn a_binary_field_is_a_string_or_the_text_of_a_scalar() {
        assert_eq!(ClientRef::from("14").binary_field(), Some("14"));
        assert_eq!(ClientRef::from("[").binary_field(), Some("["), "a string is a string, whatever it holds");
        assert_eq!(parsed("14").binary_field(), Some("14"));
        assert_eq!(parsed("1.5").binary_field(), Some("1.5"));
        assert_eq!(parsed("true").binary_field(), Some("true"));
        assert_eq!(parsed("[1]").binary_field(), None);
        assert_eq!(parsed(r#"{"a":1}"#).binary_field(), None);
    }

    #[test]
    fn deserializes_from_any_value_but_null() {
        let refs: Vec<Option<ClientRef>> = serde_json::from_str(r#"["a", 1, null, [2]]"#).unwrap();
        assert_eq!(refs, [Some(ClientRef::from("a")), Some(parsed("1")), None, Some(parsed("[2]"))]);
        assert!(serde_json::from_str::<ClientRef>("null").is_err());
    }
}
