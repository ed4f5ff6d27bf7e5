//! A client's `ref` or `join_ref` as a term, and back: the term Phoenix's channels see
//! (Jason's decoding of the client's JSON: a string is a binary, a number an integer or
//! a float, `null` is `nil`, an object a map), which the channel hands back with its
//! replies and join answers.

use fenix_core::protocol::ClientRef;
use rustler::{Decoder, Encoder, Env, NifResult, Term, TermType};

use crate::atoms;
use crate::term::{binary, json_to_term, write_json};

/// A ref going to Elixir.
pub(crate) struct RefTerm<'r>(pub(crate) Option<&'r ClientRef>);

impl Encoder for RefTerm<'_> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self.0 {
            None => atoms::nil().encode(env),
            Some(r) => match r.as_str() {
                // The common case, without a JSON round trip.
                Some(s) => binary(env, s.as_bytes()),
                None => json_to_term(env, &r.to_value()),
            },
        }
    }
}

/// A ref coming back from Elixir: a term [`RefTerm`] made, or any other term JSON can
/// carry (a channel may reply to a ref of its own making). Anything else is `badarg`.
pub(crate) struct RefArg(pub(crate) Option<ClientRef>);

impl RefArg {
    pub(crate) fn as_ref(&self) -> Option<&ClientRef> {
        self.0.as_ref()
    }
}

impl<'a> Decoder<'a> for RefArg {
    fn decode(term: Term<'a>) -> NifResult<RefArg> {
        match term.get_type() {
            TermType::Binary => {
                let text = std::str::from_utf8(term.into_binary()?.as_slice()).map_err(|_| rustler::Error::BadArg)?;
                Ok(RefArg(Some(ClientRef::from(text))))
            }
            TermType::Atom if term == atoms::nil().encode(term.get_env()) => Ok(RefArg(None)),
            // Rare: through JSON, which also puts a map's keys in the order serde_json
            // compares them in (a large map's term order is not sorted).
            _ => {
                let mut json = Vec::new();
                write_json(term, &mut json, 0).map_err(|_| rustler::Error::BadArg)?;
                let text = std::str::from_utf8(&json).map_err(|_| rustler::Error::BadArg)?;
                ClientRef::from_json(text).map(RefArg).map_err(|_| rustler::Error::BadArg)
            }
        }
    }
}
