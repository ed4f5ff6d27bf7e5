//! The codec's hot path, timed with the standard library only (no bench framework):
//! the echo of a client push (decode a 2.0.0 text frame, encode the reply with its refs)
//! and the encode of a broadcast, the two things every message costs. Prints
//! nanoseconds per operation, the best of several rounds (the machine is shared).
//!
//! `cargo bench -p fenix_core --bench codec`

use std::hint::black_box;
use std::time::Instant;

use fenix_core::protocol::{Body, Outgoing, Serializer, Status};

const ROUNDS: usize = 7;
const ITERATIONS: u32 = 200_000;

/// The best time per iteration of `op`, in nanoseconds.
fn best_ns(mut op: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut out = Vec::with_capacity(256);
    let echo = |frame: &[u8], out: &mut Vec<u8>| {
        let msg = Serializer::V2.decode_text(black_box(frame)).expect("a valid frame");
        out.clear();
        let reply = Outgoing::reply(msg.join_ref.as_ref(), msg.r#ref.as_ref(), &msg.topic, Status::Ok, Body::Json(b"{}"));
        Serializer::V2.encode(&reply, out).expect("encodable");
        black_box(&out);
    };
    let string_refs = br#"["3","5","room:lobby","echo",{"hello":"world","n":1}]"#;
    println!("echo, string refs:  {:>7.1} ns", best_ns(|| echo(string_refs, &mut out)));
    let small = br#"["3","5","t","e",{}]"#;
    println!("echo, small frame:  {:>7.1} ns", best_ns(|| echo(small, &mut out)));
    let number_refs = br#"[3,5,"room:lobby","echo",{"hello":"world","n":1}]"#;
    if Serializer::V2.decode_text(number_refs).is_ok() {
        println!("echo, number refs:  {:>7.1} ns", best_ns(|| echo(number_refs, &mut out)));
    }
    let shout = Outgoing::broadcast("room:lobby", "shout", Body::Json(br#"{"msg":"hi all"}"#));
    let broadcast = best_ns(|| {
        out.clear();
        Serializer::V2.encode(black_box(&shout), &mut out).expect("encodable");
        black_box(&out);
    });
    println!("broadcast encode:   {broadcast:>7.1} ns");
}
