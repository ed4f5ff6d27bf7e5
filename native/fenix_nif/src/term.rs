//! BEAM terms <-> JSON, written by hand: faster than going through serde, and able to
//! take atom keys. Map keys come out in the map's own order, which for maps of up to
//! 32 keys is Erlang term order (atoms, then strings, sorted), as Jason emits them.

use fenix_core::protocol::json::write_str;
use fenix_core::protocol::{Body, Payload};
use rustler::types::map::MapIterator;
use rustler::{Binary, Encoder, Env, NewBinary, Term, TermType};
use serde_json::Value;

use crate::atoms;

/// Deeper terms are refused rather than risking the scheduler's stack.
const MAX_DEPTH: usize = 256;

/// A term JSON cannot represent.
#[derive(Debug)]
pub(crate) struct Unsupported;

/// A payload term: a JSON-able term, or `{:binary, data}`.
pub(crate) enum EncodedPayload<'a> {
    Json(Vec<u8>),
    Binary(Binary<'a>),
}

impl EncodedPayload<'_> {
    pub(crate) fn body(&self) -> Body<'_> {
        match self {
            EncodedPayload::Json(json) => Body::Json(json),
            EncodedPayload::Binary(data) => Body::Binary(data.as_slice()),
        }
    }
}

/// More terms than this in a payload and encoding it (~0.1-0.3 us a term) may take more
/// than the ~1 ms a NIF on a normal scheduler may: such payloads go to a dirty one.
const DIRTY_TERMS: usize = 4096;

/// Whether encoding `term` belongs on a dirty scheduler: it counts the terms it holds,
/// stopping at [`DIRTY_TERMS`] (a bounded walk, a few microseconds).
pub(crate) fn is_large(term: Term<'_>) -> bool {
    fn count(term: Term<'_>, budget: &mut usize) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        match term.get_type() {
            TermType::List => {
                if let Ok(items) = term.decode::<rustler::ListIterator>() {
                    for item in items {
                        count(item, budget);
                        if *budget == 0 {
                            return;
                        }
                    }
                }
            }
            TermType::Map => {
                if let Ok(entries) = term.decode::<MapIterator>() {
                    for (key, value) in entries {
                        count(key, budget);
                        count(value, budget);
                        if *budget == 0 {
                            return;
                        }
                    }
                }
            }
            TermType::Tuple => {
                if let Ok(items) = rustler::types::tuple::get_tuple(term) {
                    for item in items {
                        count(item, budget);
                    }
                }
            }
            _ => {}
        }
    }
    let mut budget = DIRTY_TERMS;
    count(term, &mut budget);
    budget == 0
}

/// Encodes a payload term.
pub(crate) fn encode_payload(term: Term<'_>) -> Result<EncodedPayload<'_>, Unsupported> {
    if let Ok((tag, data)) = term.decode::<(rustler::Atom, Binary)>() {
        if tag == atoms::binary() {
            return Ok(EncodedPayload::Binary(data));
        }
    }
    let mut out = Vec::with_capacity(64);
    write_json(term, &mut out, 0)?;
    Ok(EncodedPayload::Json(out))
}

pub(crate) fn write_json(term: Term<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported);
    }
    match term.get_type() {
        TermType::Atom => {
            let name = term.atom_to_string().map_err(|_| Unsupported)?;
            match name.as_str() {
                "nil" => out.extend_from_slice(b"null"),
                "true" | "false" => out.extend_from_slice(name.as_bytes()),
                other => write_str(out, other),
            }
        }
        TermType::Binary => {
            let binary = term.decode::<Binary>().map_err(|_| Unsupported)?;
            let text = std::str::from_utf8(binary.as_slice()).map_err(|_| Unsupported)?;
            write_str(out, text);
        }
        TermType::Integer => {
            if let Ok(i) = term.decode::<i64>() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                let u = term.decode::<u64>().map_err(|_| Unsupported)?;
                out.extend_from_slice(u.to_string().as_bytes());
            }
        }
        TermType::Float => {
            let f = term.decode::<f64>().map_err(|_| Unsupported)?;
            serde_json::to_writer(&mut *out, &f).map_err(|_| Unsupported)?;
        }
        TermType::List => {
            out.push(b'[');
            let items = term.into_list_iterator().map_err(|_| Unsupported)?;
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        TermType::Map => {
            out.push(b'{');
            let entries = MapIterator::new(term).ok_or(Unsupported)?;
            for (i, (key, value)) in entries.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(key, out)?;
                out.push(b':');
                write_json(value, out, depth + 1)?;
            }
            out.push(b'}');
        }
        _ => return Err(Unsupported),
    }
    Ok(())
}

fn write_key(key: Term<'_>, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    match key.get_type() {
        TermType::Atom => {
            let name = key.atom_to_string().map_err(|_| Unsupported)?;
            // A struct has no JSON form unless the application converts it.
            if name == "__struct__" {
                return Err(Unsupported);
            }
            write_str(out, &name);
        }
        TermType::Binary => write_json(key, out, 0)?,
        TermType::Integer => {
            let i = key.decode::<i64>().map_err(|_| Unsupported)?;
            write_str(out, &i.to_string());
        }
        _ => return Err(Unsupported),
    }
    Ok(())
}


/// Builds the term of a client payload.
pub(crate) fn payload_to_term<'a>(env: Env<'a>, payload: &Payload) -> Term<'a> {
    match payload {
        Payload::Json(value) => json_to_term(env, value),
        Payload::Binary(data) => (atoms::binary(), binary(env, data)).encode(env),
    }
}

/// A binary term with a copy of `data`.
pub(crate) fn binary<'a>(env: Env<'a>, data: &[u8]) -> Term<'a> {
    let mut binary = NewBinary::new(env, data.len());
    binary.as_mut_slice().copy_from_slice(data);
    Binary::from(binary).to_term(env)
}

/// JSON -> term: objects become maps with string keys, `null` becomes `nil`.
pub(crate) fn json_to_term<'a>(env: Env<'a>, value: &Value) -> Term<'a> {
    match value {
        Value::Null => atoms::nil().encode(env),
        Value::Bool(b) => b.encode(env),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.encode(env),
            (None, Some(u)) => u.encode(env),
            _ => n.as_f64().unwrap_or(0.0).encode(env),
        },
        Value::String(s) => binary(env, s.as_bytes()),
        Value::Array(items) => items.iter().map(|item| json_to_term(env, item)).collect::<Vec<_>>().encode(env),
        Value::Object(object) => {
            let keys: Vec<Term<'a>> = object.keys().map(|k| binary(env, k.as_bytes())).collect();
            let values: Vec<Term<'a>> = object.values().map(|v| json_to_term(env, v)).collect();
            // Keys of a JSON object as decoded are unique, so this cannot fail.
            Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
        }
    }
}
