//! The accept loop of a listener (HTTP or HTTPS). It ends when the server stops, and
//! the listening socket is closed with it, so that a new server can bind the same port.
//! It only accepts: everything else, a TLS handshake included, runs in the
//! connection's own task.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::{http, tls, Scheme, Shared};

pub(super) async fn run(listener: TcpListener, scheme: Scheme, shared: Arc<Shared>) {
    let stopped = shared.connections.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // The head's deadline runs from now, the TLS handshake included.
                    let deadline = tokio::time::Instant::now() + shared.config.head_timeout;
                    let shared = Arc::clone(&shared);
                    match &scheme {
                        Scheme::Http => tokio::spawn(http::serve(stream, peer, shared, deadline)),
                        Scheme::Https(acceptor) => tokio::spawn(tls::serve(acceptor.clone(), stream, peer, shared, deadline)),
                    };
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = &mut stopped => return,
        }
    }
}
