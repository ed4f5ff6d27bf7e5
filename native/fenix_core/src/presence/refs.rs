//! `phx_ref`: the id of one meta, by which clients add and remove it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Length of a ref: 12 bytes in URL-safe base64 are 16 characters, without padding.
const REF_LEN: usize = 16;

/// The `phx_ref` of a meta: 16 URL-safe base64 characters, the shape of the refs that
/// Phoenix makes (`Base.url_encode64` of 12 bytes: a timestamp, a hash of node and
/// process, a unique integer). Clients only compare refs; they never look inside.
///
/// A copyable value, so that keeping it beside a meta and in the diff buffer costs no
/// allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref([u8; REF_LEN]);

impl Ref {
    /// The ref as the string sent to clients.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a ref holds base64 characters only")
    }

    /// Reads a ref that a generator made (sent by another node); `None` for anything
    /// else, so that a replicated meta cannot smuggle a ref of another shape in.
    pub(super) fn parse(text: &str) -> Option<Ref> {
        let bytes: [u8; REF_LEN] = text.as_bytes().try_into().ok()?;
        let is_base64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        bytes.iter().all(is_base64url).then_some(Ref(bytes))
    }
}

impl fmt::Debug for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref({})", self.as_str())
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Makes the refs of one node: shared by all its topics (behind an `Arc`), so that a
/// ref is never made twice while the node runs.
///
/// A ref is a counter (8 bytes) and a node tag (4 bytes), base64-encoded. The counter
/// makes refs unique on the node; seeding it with the clock at start-up (nanoseconds,
/// as Phoenix's refs begin with) keeps them unique across restarts, and the tag keeps
/// them apart from other nodes' once presence is replicated. The core takes both from
/// its caller, so that it stays free of clocks and randomness and its tests are exact.
#[derive(Debug)]
pub struct RefGenerator {
    tag: u32,
    next: AtomicU64,
}

impl RefGenerator {
    /// A generator for the node tagged `tag` whose counter starts at `seed`.
    ///
    /// ```
    /// use fenix_core::presence::RefGenerator;
    /// let refs = RefGenerator::new(7, 1);
    /// assert_eq!(refs.next_ref().as_str(), "AAAAAAAAAAEAAAAH");
    /// assert_eq!(refs.next_ref().as_str(), "AAAAAAAAAAIAAAAH");
    /// ```
    pub fn new(tag: u32, seed: u64) -> Self {
        RefGenerator { tag, next: AtomicU64::new(seed) }
    }

    /// A ref that this generator never made before.
    pub fn next_ref(&self) -> Ref {
        // Relaxed: only uniqueness matters, which fetch_add gives at any ordering.
        let count = self.next.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 12];
        raw[..8].copy_from_slice(&count.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag.to_be_bytes());
        let mut text = [0u8; REF_LEN];
        URL_SAFE_NO_PAD.encode_slice(raw, &mut text).expect("12 bytes are 16 base64 characters");
        Ref(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_distinct_and_parse_back() {
        let refs = RefGenerator::new(u32::MAX, u64::MAX - 1);
        let (a, b) = (refs.next_ref(), refs.next_ref());
        assert_ne!(a, b);
        assert_eq!(Ref::parse(a.as_str()), Some(a));
        assert_eq!(Ref::parse(b.as_str()), Some(b));
    }

    #[test]
    fn parse_refuses_other_shapes() {
        assert_eq!(Ref::parse("F5T2zzvtQ+g="), None, "standard base64, 12 characters");
        assert_eq!(Ref::parse("AAAAAAAAAAEAAAA"), None, "15 characters");
        assert_eq!(Ref::parse("AAAAAAAAAAEAAA+H"), None, "'+' is not URL-safe");
        assert_eq!(Ref::parse("AAAAAAAAAAEAAA\u{e9}"), None, "16 bytes, not all ASCII");
    }
}
