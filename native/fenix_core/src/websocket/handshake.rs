//! The opening handshake (RFC6455§4.2.2).

use base64::Engine as _;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC6455§1.3.
/// assert_eq!(
///     fenix_core::websocket::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(client_key);
    sha1.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}
