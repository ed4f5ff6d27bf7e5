//! The one JSON shape that `presence_state` and both halves of `presence_diff` share:
//! `{key: {metas: [meta, ...]}, ...}`.

use super::meta::Meta;
use crate::protocol::json::write_str;

/// Appends `{key: {"metas": [meta, ...]}, ...}` for `metas`, which come sorted by key
/// (a key's metas next to each other, in the order they are to be listed). Each meta's
/// bytes are copied as they are: nothing is encoded here but keys and punctuation.
pub(super) fn write_grouped<'a>(out: &mut Vec<u8>, metas: impl IntoIterator<Item = (&'a str, &'a Meta)>) {
    out.push(b'{');
    let mut current: Option<&str> = None;
    for (key, meta) in metas {
        if current == Some(key) {
            out.push(b',');
        } else {
            if current.is_some() {
                out.extend_from_slice(b"]},");
            }
            write_str(out, key);
            out.extend_from_slice(b":{\"metas\":[");
            current = Some(key);
        }
        out.extend_from_slice(meta.json());
    }
    if current.is_some() {
        out.extend_from_slice(b"]}");
    }
    out.push(b'}');
}
