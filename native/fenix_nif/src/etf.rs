//! Presences as terms: a whole `%{key => %{metas: [meta, ...]}}` written as one binary
//! in the external term format and decoded by the VM in one call
//! (`enif_binary_to_term`), from each meta's stored native form (the term it was
//! tracked with, as `term_to_binary` gave it).
//!
//! Why by hand rather than term by term through rustler: a 10,000-member topic
//! (three fields a meta) took 14-18 ms as JSON parsed and built into terms one by
//! one, and takes 10 ms as one binary written here (~2 ms, under the topic's lock)
//! and decoded by the VM (~6 ms, as long as `:erlang.binary_to_term/1` of the same
//! bytes); the metas also come back as they were tracked (atom keys, integers, nested
//! maps), as `Phoenix.Presence` gives them, not as their JSON.
//!
//! Only the few tags needed here are written; everything inside a meta is the VM's
//! own encoding, copied. Tested from ExUnit against the VM (`test/fenix/presence_test.exs`:
//! what is listed is what was tracked). Atoms are decoded in safe mode: they all exist already
//! (the metas' own, and `metas`, `joins`, `leaves`, `phx_ref`, `phx_ref_prev`, `topic`, `event`,
//! `payload`, made with all of `crate::atoms` at its first use, before any hub starts;
//! `Fenix.Socket.Broadcast` is loaded with Fenix).

use std::ops::Range;

use fenix_core::presence::{Diff, Meta};
use rustler::{Encoder, Env, Term};

const VERSION: u8 = 131;
const MAP_EXT: u8 = 116;
const BINARY_EXT: u8 = 109;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const LIST_EXT: u8 = 108;
const NIL_EXT: u8 = 106;

/// An external-format term being written.
#[derive(Debug)]
pub(crate) struct Etf(Vec<u8>);

impl Etf {
    pub(crate) fn new() -> Self {
        Etf(vec![VERSION])
    }

    /// A map of `arity` pairs: each key then its value follows.
    pub(crate) fn map(&mut self, arity: usize) -> &mut Self {
        self.0.push(MAP_EXT);
        self.len(arity)
    }

    pub(crate) fn binary(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.push(BINARY_EXT);
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
        self
    }

    /// An atom of at most 255 bytes (the names written here are constants).
    pub(crate) fn atom(&mut self, name: &str) -> &mut Self {
        debug_assert!(name.len() <= usize::from(u8::MAX));
        self.0.push(SMALL_ATOM_UTF8_EXT);
        self.0.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        self.0.extend_from_slice(name.as_bytes());
        self
    }

    /// A proper list of `len` elements: the elements follow, then [`Etf::nil`]. An
    /// empty list is [`Etf::nil`] alone.
    pub(crate) fn list(&mut self, len: usize) -> &mut Self {
        self.0.push(LIST_EXT);
        self.len(len)
    }

    pub(crate) fn nil(&mut self) -> &mut Self {
        self.0.push(NIL_EXT);
        self
    }

    /// A meta as the application tracked it, with `phx_ref` (and `phx_ref_prev`) put
    /// in, as `Phoenix.Presence` does (`Map.put(meta, :phx_ref, ref)`). The tracked map
    /// never holds those atom keys (`Fenix.Presence` drops them before tracking), so no
    /// key is written twice. A meta without a native form (none is tracked so; only
    /// the core's own tests make them) is listed with its refs alone.
    pub(crate) fn meta(&mut self, meta: &Meta) -> &mut Self {
        let native = meta.native();
        let (arity, pairs) = match native {
            [VERSION, MAP_EXT, a, b, c, d, pairs @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]) as usize, pairs),
            _ => (0, &[][..]),
        };
        let prev = meta.phx_ref_prev();
        self.map(arity + 1 + usize::from(prev.is_some()));
        self.0.extend_from_slice(pairs);
        self.atom("phx_ref").binary(meta.phx_ref().as_str().as_bytes());
        if let Some(prev) = prev {
            self.atom("phx_ref_prev").binary(prev.as_str().as_bytes());
        }
        self
    }

    /// `%{key => %{metas: [meta, ...]}}`, written entry by entry ([`Presences::add`]).
    pub(crate) fn presences(&mut self) -> Presences<'_> {
        let arity_at = self.0.len() + 1;
        self.map(0);
        Presences { etf: self, arity_at, keys: 0, key: None, metas_at: 0, metas: 0 }
    }

    /// `%{joins: presences, leaves: presences}` of a tick's diff.
    pub(crate) fn diff(&mut self, diff: &Diff) -> &mut Self {
        self.map(2);
        for (name, entries) in [("joins", &diff.joins), ("leaves", &diff.leaves)] {
            self.atom(name);
            let mut presences = self.presences();
            entries.iter().for_each(|(key, meta)| presences.add(key, meta));
            presences.finish();
        }
        self
    }

    /// `%Fenix.Socket.Broadcast{topic: topic, event: event, payload: ...}`: the payload
    /// is written next.
    pub(crate) fn broadcast(&mut self, topic: &str, event: &str) -> &mut Self {
        self.map(4).atom("__struct__").atom("Elixir.Fenix.Socket.Broadcast");
        self.atom("topic").binary(topic.as_bytes()).atom("event").binary(event.as_bytes());
        self.atom("payload")
    }

    /// `%{metas: [meta, ...]}`.
    pub(crate) fn metas<'m>(&mut self, metas: impl ExactSizeIterator<Item = &'m Meta>) -> &mut Self {
        self.map(1).atom("metas");
        if metas.len() > 0 {
            self.list(metas.len());
            metas.for_each(|meta| {
                self.meta(meta);
            });
        }
        self.nil()
    }

    /// The term, decoded by the VM; nil if the bytes are not a term (a bug here, not
    /// input).
    pub(crate) fn decode<'a>(&self, env: Env<'a>) -> Term<'a> {
        env.binary_to_term(&self.0).map_or_else(|| crate::atoms::nil().encode(env), |(term, _)| term)
    }

    /// A length or arity: 32 bits big-endian. Presences never come near 4 G entries
    /// or bytes (the limits are far lower).
    fn len(&mut self, len: usize) -> &mut Self {
        self.0.extend_from_slice(&be32(len));
        self
    }

    /// Writes `len` over the placeholder at `at` (what [`Etf::len`] wrote there).
    fn set_len(&mut self, at: usize, len: usize) {
        self.0[at..at + 4].copy_from_slice(&be32(len));
    }
}

fn be32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// A presences map being written: entries come sorted by key (a key's metas next to
/// each other, in the order they are listed), and the counts (keys, a key's metas) are
/// written in place once known, so nothing is gathered first. [`Presences::finish`]
/// ends it.
#[derive(Debug)]
pub(crate) struct Presences<'e> {
    etf: &'e mut Etf,
    /// Where the map's arity goes, and how many keys so far.
    arity_at: usize,
    keys: usize,
    /// The current key's bytes in the buffer, where its list's length goes, and how
    /// many metas so far.
    key: Option<Range<usize>>,
    metas_at: usize,
    metas: usize,
}

impl Presences<'_> {
    /// One entry: `meta` under `key`.
    pub(crate) fn add(&mut self, key: &str, meta: &Meta) {
        let same_key = self.key.as_ref().is_some_and(|current| self.etf.0[current.clone()] == *key.as_bytes());
        if !same_key {
            self.end_key();
            self.keys += 1;
            self.etf.binary(key.as_bytes());
            let end = self.etf.0.len();
            self.key = Some(end - key.len()..end);
            self.etf.map(1).atom("metas");
            self.metas_at = self.etf.0.len() + 1;
            self.etf.list(0);
            self.metas = 0;
        }
        self.metas += 1;
        self.etf.meta(meta);
    }

    pub(crate) fn finish(mut self) {
        self.end_key();
        self.etf.set_len(self.arity_at, self.keys);
    }

    fn end_key(&mut self) {
        if self.key.is_some() {
            self.etf.set_len(self.metas_at, self.metas);
            self.etf.nil();
        }
    }
}
