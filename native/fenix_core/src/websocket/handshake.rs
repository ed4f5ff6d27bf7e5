//! The opening handshake: checking a client's upgrade request (RFC6455§4.2.1) and the
//! `Sec-WebSocket-Accept` key of the answer (§4.2.2).

use base64::Engine as _;
use thiserror::Error;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version the server speaks; a 426 answer names it (RFC6455§4.4).
pub const SUPPORTED_VERSION: &str = "13";

/// The length of a key in base64: 16 bytes take 24 characters, padding included.
const KEY_BASE64_LEN: usize = 24;
const KEY_LEN: usize = 16;

/// Why an upgrade request is refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request's method is not GET.
    #[error("a WebSocket upgrade must be a GET request (RFC6455§4.2.1)")]
    NotGet,
    /// No `Upgrade` header lists the `websocket` token.
    #[error("the Upgrade header must contain \"websocket\" (RFC6455§4.2.1)")]
    NotWebSocket,
    /// No `Connection` header lists the `upgrade` token.
    #[error("the Connection header must contain \"upgrade\" (RFC6455§4.2.1)")]
    NotConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing, repeated or not 13.
    #[error("unsupported Sec-WebSocket-Version: this server speaks version 13 (RFC6455§4.4)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 bytes in base64.
    #[error("Sec-WebSocket-Key must be 16 bytes in base64 (RFC6455§4.2.1)")]
    InvalidKey,
}

impl HandshakeError {
    /// The HTTP status of the answer: 426 Upgrade Required for a version the server does
    /// not speak (RFC6455§4.2.2 /version/), sent with `Sec-WebSocket-Version:
    /// 13`; 400 Bad Request for any other malformed handshake (§4.2.2).
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}

/// Checks that a request is a WebSocket upgrade this server can accept (RFC6455§4.2.1)
/// and returns its `Sec-WebSocket-Key`, trimmed, for [`accept_key`].
///
/// `headers` are `(name, value)` pairs with the names in lowercase, in the order they
/// came; a name may repeat. The checks, in order:
/// 1. the method is `GET`;
/// 2. an `Upgrade` header lists `websocket` (ASCII case-insensitive);
/// 3. a `Connection` header lists `upgrade` (ASCII case-insensitive), as in Firefox's
///    `Connection: keep-alive, Upgrade`;
/// 4. exactly one `Sec-WebSocket-Version`, and it is `13`;
/// 5. exactly one `Sec-WebSocket-Key`, the base64 of 16 bytes.
///
/// ```
/// use fenix_core::websocket::{check_upgrade, HandshakeError};
/// // The request of RFC6455§1.2, with header names in lowercase.
/// let mut headers: Vec<(String, String)> = [
///     ("host", "server.example.com"),
///     ("upgrade", "websocket"),
///     ("connection", "Upgrade"),
///     ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
///     ("sec-websocket-version", "13"),
/// ]
/// .map(|(name, value)| (name.to_owned(), value.to_owned()))
/// .into();
/// assert_eq!(check_upgrade("GET", &headers), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
///
/// headers[4].1 = "8".to_owned();
/// assert_eq!(check_upgrade("GET", &headers), Err(HandshakeError::UnsupportedVersion));
/// assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
/// ```
pub fn check_upgrade<'a>(method: &str, headers: &'a [(String, String)]) -> Result<&'a str, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if !lists_token(headers, "upgrade", "websocket") {
        return Err(HandshakeError::NotWebSocket);
    }
    if !lists_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::NotConnectionUpgrade);
    }
    if single_value(headers, "sec-websocket-version") != Some(SUPPORTED_VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    match single_value(headers, "sec-websocket-key") {
        Some(key) if is_valid_key(key) => Ok(key),
        _ => Err(HandshakeError::InvalidKey),
    }
}

/// Whether any `name` header holds `token` in its comma-separated list (RFC 9110§5.6.1).
fn lists_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    values(headers, name).flat_map(|value| value.split(',')).any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// The value of a header that must appear once (RFC6455§11.3.1, §11.3.5); `None` if it
/// is missing or repeated.
fn single_value<'a>(headers: &'a [(String, String)], name: &'a str) -> Option<&'a str> {
    let mut found = values(headers, name);
    let value = found.next()?;
    found.next().is_none().then(|| value.trim())
}

fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A key is a random 16-byte nonce in base64 (RFC6455§4.1, §4.2.1 item 5). The length is
/// checked first, so a long header never costs a decode.
fn is_valid_key(key: &str) -> bool {
    key.len() == KEY_BASE64_LEN
        && base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|nonce| nonce.len() == KEY_LEN)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// Edits of a header list: a name given with `None` is removed, with a value replaced or added.
    type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

    /// The headers of a valid upgrade (RFC6455§1.2), with `changes` applied.
    fn headers(changes: Changes<'_>) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-version", "13"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        for (name, value) in changes {
            headers.retain(|(n, _)| n != name);
            if let Some(value) = value {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        headers
    }

    #[test]
    fn accepts_what_browsers_and_clients_send() {
        let accepted: [(Changes<'_>, &str); 6] = [
            (&[], "the request of RFC6455§1.2"),
            (&[("connection", Some("keep-alive, Upgrade"))], "Firefox"),
            (&[("connection", Some("Keep-Alive,upgrade"))], "a list without spaces, other case"),
            (&[("upgrade", Some("WebSocket"))], "the upgrade token in another case (§4.2.1 item 3)"),
            (&[("sec-websocket-key", Some(" dGhlIHNhbXBsZSBub25jZQ== "))], "a key with spaces around"),
            (&[("sec-websocket-version", Some(" 13"))], "a version with spaces around"),
        ];
        for (changes, what) in accepted {
            assert_eq!(check_upgrade("GET", &headers(changes)), Ok(KEY), "{what}");
        }
    }

    #[test]
    fn the_upgrade_token_may_come_in_any_connection_header() {
        let mut split = headers(&[("connection", Some("keep-alive"))]);
        split.push(("connection".to_owned(), "Upgrade".to_owned()));
        assert_eq!(check_upgrade("GET", &split), Ok(KEY));
    }

    #[test]
    fn refuses_malformed_handshakes() {
        use HandshakeError::*;
        // A key of 15 bytes and one of 17, both in valid base64 (§4.2.1 item 5).
        let short_key = base64::engine::general_purpose::STANDARD.encode([7u8; 15]);
        let long_key = base64::engine::general_purpose::STANDARD.encode([7u8; 17]);
        let refused: [(Changes<'_>, HandshakeError, &str); 14] = [
            (&[("upgrade", None)], NotWebSocket, "no Upgrade (§4.2.1 item 3)"),
            (&[("upgrade", Some("h2c"))], NotWebSocket, "another protocol"),
            (&[("connection", None)], NotConnectionUpgrade, "no Connection (§4.2.1 item 4)"),
            (&[("connection", Some("keep-alive"))], NotConnectionUpgrade, "Connection without upgrade"),
            (&[("connection", Some("upgraded"))], NotConnectionUpgrade, "a token that only starts with upgrade"),
            (&[("sec-websocket-version", None)], UnsupportedVersion, "no version (§4.2.1 item 6)"),
            (&[("sec-websocket-version", Some("8"))], UnsupportedVersion, "draft hybi-08"),
            (&[("sec-websocket-version", Some("13, 8"))], UnsupportedVersion, "a list of versions"),
            (&[("sec-websocket-key", None)], InvalidKey, "no key (§4.2.1 item 5)"),
            (&[("sec-websocket-key", Some(""))], InvalidKey, "an empty key"),
            (&[("sec-websocket-key", Some("not base64 at all!!!!!!!"))], InvalidKey, "24 characters, not base64"),
            (&[("sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ"))], InvalidKey, "no padding"),
            (&[("sec-websocket-key", Some(&short_key))], InvalidKey, "15 bytes"),
            (&[("sec-websocket-key", Some(&long_key))], InvalidKey, "17 bytes"),
        ];
        for (changes, error, what) in refused {
            assert_eq!(check_upgrade("GET", &headers(changes)), Err(error), "{what}");
        }
        assert_eq!(check_upgrade("POST", &headers(&[])), Err(NotGet), "§4.2.1 item 1");
    }

    #[test]
    fn refuses_repeated_keys_and_versions() {
        for name in ["sec-websocket-key", "sec-websocket-version"] {
            let mut repeated = headers(&[]);
            let same = repeated.iter().find(|(n, _)| n == name).expect("in the base request").clone();
            repeated.push(same);
            assert!(check_upgrade("GET", &repeated).is_err(), "{name} twice (§11.3.1, §11.3.5)");
        }
    }

    #[test]
    fn only_a_version_mismatch_answers_426() {
        use HandshakeError::*;
        let statuses = [NotGet, NotWebSocket, NotConnectionUpgrade, UnsupportedVersion, InvalidKey].map(|e| e.status());
        assert_eq!(statuses, [400, 400, 400, 426, 400]);
    }
}
