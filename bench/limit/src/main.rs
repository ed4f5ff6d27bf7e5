//! The limit server: the benchmark events of the conformance app (`/work/shared/CONFORMANCE.md`)
//! in a minimal pure-Rust tokio server, with no BEAM, made as fast as it can be. It shows
//! the ceiling of the machine: Fenix's numbers are read against it.
//!
//! ```text
//! PORT=4001 fenix-limit [--threads N]      # prints "listening on 127.0.0.1:4001"
//! ```
//!
//! Wire-identical to the conformance app for what it implements, so the same load
//! generator drives both: WebSocket `/socket/websocket?vsn=2.0.0&user_id=...` (vsn 2.0.0
//! text frames only), heartbeats, `phx_join` on `room:<x>` (reply `{"joined", "user_id"}`),
//! `echo`, `shout`, `blast`, `phx_leave`; plus the answers Phoenix gives around them
//! (unmatched topic, duplicate join, stale `join_ref`, unknown event -> `phx_error`,
//! 100-channel cap) and the 60 s idle timeout. Not implemented: vsn 1.0.0, binary
//! payloads, long-poll, presence, `token=deny`, the other events of the app.
//!
//! How it is fast:
//! - the upgrade is tungstenite's (`accept_hdr_async` on `&mut TcpStream`); after the 101
//!   the socket is read and written directly ([`session`]);
//! - a broadcast is encoded and framed once; every subscriber's queue gets the same
//!   [`bytes::Bytes`] ([`registry`]); each connection writes its queued frames with one
//!   `writev`;
//! - no per-connection read buffer: a per-thread scratch buffer, frames parsed and
//!   unmasked in place; a connection keeps only the bytes of an incomplete frame;
//! - one task per connection; by default one thread (`current_thread` runtime), the
//!   fastest when the server is pinned to one core (`taskset -c 0`).
//!
//! Every queue is bounded: a client more than 1024 frames behind is disconnected.

mod frame;
mod registry;
mod session;

use std::io::Write;

use tokio::net::{TcpListener, TcpSocket};

const USAGE: &str = "usage: PORT=<port> fenix-limit [--threads N]   (default port 4001, 1 thread)";

fn main() {
    let threads = match parse_threads(std::env::args().skip(1)) {
        Ok(threads) => threads,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Err(_) => 4001,
        Ok(Ok(port)) => port,
        Ok(Err(_)) => {
            eprintln!("PORT is not a port number\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime starts");
    if let Err(error) = runtime.block_on(serve(port)) {
        eprintln!("fenix-limit: {error}");
        std::process::exit(1);
    }
}

fn parse_threads(mut args: impl Iterator<Item = String>) -> Result<usize, String> {
    let mut threads = 1;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--threads" => args.next(),
            _ => match arg.strip_prefix("--threads=") {
                Some(value) => Some(value.to_owned()),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        };
        threads = value.and_then(|v| v.parse().ok()).filter(|&n| n > 0).ok_or("--threads needs a positive number")?;
    }
    Ok(threads)
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = listen(port)?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    tokio::select! {
        () = accept_loop(listener) => {}
        () = shutdown_signal() => {}
    }
    Ok(())
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    socket.listen(4096) // a benchmark opens thousands of connections at once
}

async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session::run(stream));
            }
            Err(error) => {
                // Out of file descriptors, most likely: wait for connections to close.
                eprintln!("fenix-limit: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
