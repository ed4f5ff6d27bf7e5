//! The accept loop. It ends when the server stops, and the listening socket is closed
//! with it, so that a new server can bind the same port.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::{http, Shared};

pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let stopped = shared.connections.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(http::serve(stream, peer, Arc::clone(&shared)));
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
