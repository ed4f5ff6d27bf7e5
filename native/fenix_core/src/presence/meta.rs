//! A meta as it is held and sent: its JSON object encoded once, with its `phx_ref`, and
//! the application's own form of it, kept as given.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::PresenceError;
use super::refs::Ref;
use crate::protocol::json::write_str;

/// The field that carries a meta's ref, added by the server (Phoenix's `:phx_ref`).
pub(super) const PHX_REF: &str = "phx_ref";
/// The field that carries, in an updated meta, the ref of the meta it replaces.
pub(super) const PHX_REF_PREV: &str = "phx_ref_prev";

/// One meta of a presence: the JSON object that clients receive, `phx_ref` included.
///
/// It is encoded once, when it is tracked or updated, and its bytes are copied as they
/// are into every `presence_state` and `presence_diff` that carries it: a state of
/// 10,000 members is then 10,000 copies, not 10,000 encodings, and the same bytes serve
/// both serializers (the payload is JSON in either). The fields are written in sorted
/// order, so that equal metas are equal bytes; see [the module docs](super) on key order.
///
/// Beside the JSON it keeps the meta in the application's own encoding
/// ([`MetaFields::native`], for the NIF the term's external format, without the refs),
/// opaque here: what the application tracked is what its `list` gives back, built from
/// those bytes without parsing any JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    phx_ref: Ref,
    phx_ref_prev: Option<Ref>,
    json: Bytes,
    native: Bytes,
}

/// A meta as the application gives it: its fields as JSON, and optionally the same
/// meta in the application's own encoding, kept as is ([`Meta::native`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaFields {
    /// The fields, to which the server adds `phx_ref` (and `phx_ref_prev`).
    pub json: Map<String, Value>,
    /// The application's encoding of the same fields (empty when it has none).
    pub native: Bytes,
}

impl From<Map<String, Value>> for MetaFields {
    fn from(json: Map<String, Value>) -> Self {
        MetaFields { json, native: Bytes::new() }
    }
}

impl Meta {
    /// The meta's ref.
    pub fn phx_ref(&self) -> Ref {
        self.phx_ref
    }

    /// The ref of the meta this one replaced (an update), if any.
    pub fn phx_ref_prev(&self) -> Option<Ref> {
        self.phx_ref_prev
    }

    /// The encoded JSON object, as clients receive it.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The application's own encoding of the meta, without the refs, as it gave it.
    pub fn native(&self) -> &[u8] {
        &self.native
    }

    /// Encodes the application's `fields` with `phx_ref` (and `phx_ref_prev` for an
    /// update) set by the server: fields of those names given by the application are
    /// replaced, as Phoenix's `Map.put` does.
    /// The limit counts the JSON only: the native form is about as large.
    pub(super) fn encode(
        fields: MetaFields,
        phx_ref: Ref,
        phx_ref_prev: Option<Ref>,
        max_bytes: usize,
    ) -> Result<Meta, PresenceError> {
        let MetaFields { json: mut fields, native } = fields;
        fields.insert(PHX_REF.to_owned(), Value::String(phx_ref.as_str().to_owned()));
        if let Some(prev) = phx_ref_prev {
            fields.insert(PHX_REF_PREV.to_owned(), Value::String(prev.as_str().to_owned()));
        }
        Meta::from_fields(&fields, phx_ref, phx_ref_prev, native, max_bytes)
    }

    /// Reads a meta that another node encoded (replication): a JSON object whose
    /// `phx_ref` a [`RefGenerator`](super::RefGenerator) made. It is encoded anew, so
    /// that its bytes are in this node's canonical form whatever the sender did;
    /// `native` is kept as the sender gave it.
    pub(super) fn decode(json: &[u8], native: Bytes, max_bytes: usize) -> Result<Meta, PresenceError> {
        // Checked before parsing, so that an oversize meta costs no parse.
        if json.len() > max_bytes {
            return Err(PresenceError::MetaTooLarge { size: json.len(), max: max_bytes });
        }
        let fields: Map<String, Value> =
            serde_json::from_slice(json).map_err(|_| PresenceError::InvalidMeta("not a JSON object"))?;
        let phx_ref = fields
            .get(PHX_REF)
            .and_then(Value::as_str)
            .and_then(Ref::parse)
            .ok_or(PresenceError::InvalidMeta("phx_ref missing or not a ref"))?;
        let phx_ref_prev = match fields.get(PHX_REF_PREV) {
            None => None,
            Some(prev) => Some(
                prev.as_str().and_then(Ref::parse).ok_or(PresenceError::InvalidMeta("phx_ref_prev not a ref"))?,
            ),
        };
        Meta::from_fields(&fields, phx_ref, phx_ref_prev, native, max_bytes)
    }

    fn from_fields(
        fields: &Map<String, Value>,
        phx_ref: Ref,
        phx_ref_prev: Option<Ref>,
        native: Bytes,
        max_bytes: usize,
    ) -> Result<Meta, PresenceError> {
        // serde_json's map is sorted unless its `preserve_order` feature is on; sorting
        // here keeps the bytes canonical either way.
        let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut json = Vec::new();
        json.push(b'{');
        for (i, (name, value)) in sorted.into_iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_str(&mut json, name);
            json.push(b':');
            serde_json::to_writer(&mut json, value).expect("a JSON value always encodes into a Vec");
        }
        json.push(b'}');
        if json.len() > max_bytes {
            return Err(PresenceError::MetaTooLarge { size: json.len(), max: max_bytes });
        }
        Ok(Meta { phx_ref, phx_ref_prev, json: Bytes::from(json), native })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::RefGenerator;
    use serde_json::json;

    fn fields(value: Value) -> MetaFields {
        match value {
            Value::Object(map) => map.into(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn encodes_sorted_with_the_servers_refs() {
        let refs = RefGenerator::new(0, 1);
        let (prev, phx_ref) = (refs.next_ref(), refs.next_ref());
        let given = fields(json!({"status": "away", "phx_ref": "forged", "name": "ann \"a\""}));
        let meta = Meta::encode(given, phx_ref, Some(prev), 1024).expect("small meta");
        assert_eq!(
            std::str::from_utf8(meta.json()).expect("JSON is UTF-8"),
            r#"{"name":"ann \"a\"","phx_ref":"AAAAAAAAAAIAAAAA","phx_ref_prev":"AAAAAAAAAAEAAAAA","status":"away"}"#
        );
        assert_eq!(meta.phx_ref(), phx_ref);
        assert_eq!(meta.phx_ref_prev(), Some(prev));
    }

    #[test]
    fn the_size_limit_counts_the_refs() {
        let phx_ref = RefGenerator::new(0, 0).next_ref();
        // {"phx_ref":"AAAAAAAAAAAAAAAA"} is 30 bytes.
        let exact = Meta::encode(MetaFields::default(), phx_ref, None, 30).expect("fits exactly");
        assert_eq!(exact.json().len(), 30);
        assert_eq!(Meta::encode(MetaFields::default(), phx_ref, None, 29), Err(PresenceError::MetaTooLarge { size: 30, max: 29 }));
    }

    #[test]
    fn decodes_what_encode_made() {
        let phx_ref = RefGenerator::new(3, 9).next_ref();
        let meta =
            Meta::encode(fields(json!({"b": [1, 2], "a": {"z": 1, "y": 2}})), phx_ref, None, 1024).expect("small meta");
        assert_eq!(Meta::decode(meta.json(), Bytes::new(), 1024), Ok(meta.clone()));
        let spaced = br#"{ "phx_ref": "AAAAAAAAAAkAAAAD", "b": [1, 2], "a": {"y": 2, "z": 1} }"#;
        assert_eq!(Meta::decode(spaced, Bytes::new(), 1024), Ok(meta), "canonical bytes whatever the sender wrote");
        let native = Bytes::from_static(b"as the sender's app encoded it");
        assert_eq!(Meta::decode(spaced, native.clone(), 1024).map(|m| m.native().to_vec()), Ok(native.to_vec()));
    }

    #[test]
    fn decode_refuses_what_no_node_sends() {
        let invalid = |reason| Err(PresenceError::InvalidMeta(reason));
        assert_eq!(Meta::decode(b"[1]", Bytes::new(), 1024), invalid("not a JSON object"));
        assert_eq!(Meta::decode(b"{\"a\":", Bytes::new(), 1024), invalid("not a JSON object"));
        assert_eq!(Meta::decode(br#"{"a":1}"#, Bytes::new(), 1024), invalid("phx_ref missing or not a ref"));
        assert_eq!(Meta::decode(br#"{"phx_ref":5}"#, Bytes::new(), 1024), invalid("phx_ref missing or not a ref"));
        assert_eq!(Meta::decode(br#"{"phx_ref":"F5T2zzvtQ+g="}"#, Bytes::new(), 1024), invalid("phx_ref missing or not a ref"));
        assert_eq!(
            Meta::decode(br#"{"phx_ref":"AAAAAAAAAAkAAAAD"}"#, Bytes::new(), 10),
            Err(PresenceError::MetaTooLarge { size: 30, max: 10 })
        );
    }
}
