//! What a presence operation can refuse.

use thiserror::Error;

/// A presence operation that was refused; the state is unchanged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PresenceError {
    /// `track` of a key that this owner already tracks on the topic. Phoenix answers
    /// `{:error, {:already_tracked, pid, topic, key}}`.
    #[error("key {key:?} is already tracked by this owner")]
    AlreadyTracked {
        /// The key.
        key: String,
    },
    /// `update` of a key that this owner does not track on the topic. Phoenix answers
    /// `{:error, :nopresence}`.
    #[error("key {key:?} is not tracked by this owner")]
    NotTracked {
        /// The key.
        key: String,
    },
    /// The encoded meta is larger than [`Limits::max_meta_bytes`](super::Limits::max_meta_bytes).
    #[error("meta of {size} bytes exceeds the limit of {max} bytes")]
    MetaTooLarge {
        /// The size of the encoded meta (or of the JSON given, for a replicated one).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The key is longer than [`Limits::max_key_bytes`](super::Limits::max_key_bytes).
    #[error("key of {size} bytes exceeds the limit of {max} bytes")]
    KeyTooLong {
        /// The length of the key in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The topic already holds [`Limits::max_entries`](super::Limits::max_entries)
    /// entries (or would, after a merged block).
    #[error("the topic's presence is full ({max} entries)")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// A replicated meta is not what a node sends: a JSON object with a `phx_ref` made by
    /// a [`RefGenerator`](super::RefGenerator).
    #[error("invalid replicated meta: {0}")]
    InvalidMeta(&'static str),
}
