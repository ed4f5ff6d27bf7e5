//! The bounds of one topic's presence state, as named options with their defaults.

/// Default [`Limits::max_meta_bytes`]: 8 KiB. Phoenix advises metas that hold small,
/// ephemeral state (a status, a timestamp); every meta is sent to every member in
/// `presence_state`, so its size is multiplied by the topic's audience.
pub const DEFAULT_MAX_META_BYTES: usize = 8 * 1024;

/// Default [`Limits::max_entries`]: 100,000 entries (tracked `(owner, key)` pairs) per
/// topic, which keeps a `presence_state` under a few MB with small metas.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Default [`Limits::max_key_bytes`]: 1 KiB. Keys are user ids in practice; the bound
/// only stops a key from carrying what belongs in a meta.
pub const DEFAULT_MAX_KEY_BYTES: usize = 1024;

/// The bounds of one topic's [`Presence`](super::Presence). Breaking one is a
/// [`PresenceError`](super::PresenceError), and the state is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest meta, in bytes of its encoded JSON object, `phx_ref` and
    /// `phx_ref_prev` included. Default [`DEFAULT_MAX_META_BYTES`].
    pub max_meta_bytes: usize,
    /// The most entries the topic holds, over all keys, owners and nodes. Default
    /// [`DEFAULT_MAX_ENTRIES`].
    pub max_entries: usize,
    /// The longest key, in bytes. Default [`DEFAULT_MAX_KEY_BYTES`].
    pub max_key_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_meta_bytes: DEFAULT_MAX_META_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
        }
    }
}
