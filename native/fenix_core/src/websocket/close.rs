//! Close status codes: the ones the server sends, and the answer to a client's close
//! frame (RFC6455§5.5.1, §7.4).

/// Close status codes the server sends (RFC6455§7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: going away; Phoenix 1.8 uses it for a `disconnect` broadcast so that clients reconnect.
    GoingAway,
    /// 1002: protocol error; also what Phoenix (Bandit) sends on idle timeout.
    Protocol,
    /// 1007: a message that is not what the serializer expects.
    InvalidPayload,
    /// 1008: policy violation (slow reader, flood).
    Policy,
    /// 1009: message too big.
    TooBig,
    /// 1011: the server hit an unexpected condition.
    Internal,
    /// 1012: service restart (IANA registry of RFC6455§11.7): the server is stopping or
    /// restarting; clients reconnect.
    ServiceRestart,
    /// The valid code a client closed with, echoed back (RFC6455§5.5.1); see [`CloseCode::echo`].
    Echo(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::Echo(code) => code,
        }
    }

    /// The answer to a client's close frame, given its (unmasked) payload.
    ///
    /// - No payload: 1000. The client gave no code (RFC6455§5.5.1), and 1005 "no status
    ///   received" must never be put in a frame (§7.4.1).
    /// - A code a peer may send, followed by a UTF-8 reason (possibly empty): that code,
    ///   echoed (§5.5.1).
    /// - Anything else is a protocol error, answered with 1002: a one-byte payload (the
    ///   code takes two bytes, §5.5.1), a reason that is not UTF-8 (§5.5.1, §8.1), or a
    ///   code no endpoint may send (see below).
    ///
    /// The codes a peer may send (§7.4.1, §7.4.2 and the IANA "WebSocket Close Code
    /// Number" registry): 1000-1003, 1007-1011, 1012-1014 (registered by IANA after the
    /// RFC, and accepted by browsers and the Autobahn test suite), 3000-3999 (registered
    /// for libraries and frameworks) and 4000-4999 (private use). Never on the wire:
    /// codes below 1000 (unused, §7.4.2), 1004 (reserved), 1005, 1006 and 1015 (only
    /// reported locally, §7.4.1), the unassigned 1016-2999, and 5000 and above.
    ///
    /// ```
    /// use fenix_core::websocket::CloseCode;
    /// // 1001 "going away" with the reason "x"
    /// assert_eq!(CloseCode::echo(&[0x03, 0xe9, b'x']).as_u16(), 1001);
    /// // no payload at all
    /// assert_eq!(CloseCode::echo(&[]).as_u16(), 1000);
    /// // 1005 is only ever reported locally: a peer that sends it broke the protocol
    /// assert_eq!(CloseCode::echo(&[0x03, 0xed]), CloseCode::Protocol);
    /// ```
    pub fn echo(close_payload: &[u8]) -> CloseCode {
        match close_payload {
            [] => CloseCode::Normal,
            [high, low, reason @ ..] => {
                let code = u16::from_be_bytes([*high, *low]);
                if is_sendable(code) && std::str::from_utf8(reason).is_ok() {
                    CloseCode::Echo(code)
                } else {
                    CloseCode::Protocol
                }
            }
            [_] => CloseCode::Protocol,
        }
    }
}

/// Whether an endpoint may put `code` in a close frame (the list is on [`CloseCode::echo`]).
fn is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A close payload: the code in network byte order, then the reason bytes (RFC6455§5.5.1).
    fn payload(code: u16, reason: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], reason].concat()
    }

    #[test]
    fn echoes_every_code_a_peer_may_send() {
        // (code, where the RFC or the IANA registry defines it)
        let valid = [
            (1000, "normal closure, RFC6455§7.4.1"),
            (1001, "going away, §7.4.1"),
            (1002, "protocol error, §7.4.1"),
            (1003, "unacceptable data, §7.4.1"),
            (1007, "inconsistent data, §7.4.1"),
            (1008, "policy violation, §7.4.1"),
            (1009, "message too big, §7.4.1"),
            (1010, "extension expected, §7.4.1"),
            (1011, "unexpected condition, §7.4.1"),
            (1012, "service restart, IANA registry"),
            (1013, "try again later, IANA registry"),
            (1014, "bad gateway, IANA registry"),
            (3000, "first of the library codes, §7.4.2"),
            (3999, "last of the library codes, §7.4.2"),
            (4000, "first of the private codes, §7.4.2"),
            (4999, "last of the private codes, §7.4.2"),
        ];
        for (code, what) in valid {
            assert_eq!(CloseCode::echo(&payload(code, b"")), CloseCode::Echo(code), "{code}: {what}");
            assert_eq!(CloseCode::echo(&payload(code, b"bye")), CloseCode::Echo(code), "{code} with a reason: {what}");
        }
    }

    #[test]
    fn answers_codes_no_peer_may_send_with_a_protocol_error() {
        let invalid = [
            (0, "below 1000: unused, RFC6455§7.4.2"),
            (999, "below 1000: unused, §7.4.2"),
            (1004, "reserved, §7.4.1"),
            (1005, "no status received: reported locally only, §7.4.1"),
            (1006, "abnormal closure: reported locally only, §7.4.1"),
            (1015, "TLS handshake failure: reported locally only, §7.4.1"),
            (1016, "unassigned in the IANA registry, §7.4.2"),
            (2000, "unassigned in the IANA registry, §7.4.2"),
            (2999, "unassigned in the IANA registry, §7.4.2"),
            (5000, "above the defined ranges, §7.4.2"),
            (u16::MAX, "above the defined ranges, §7.4.2"),
        ];
        for (code, what) in invalid {
            assert_eq!(CloseCode::echo(&payload(code, b"")), CloseCode::Protocol, "{code}: {what}");
        }
    }

    #[test]
    fn answers_malformed_payloads_by_their_shape() {
        let cases: [(&[u8], CloseCode, &str); 5] = [
            (b"", CloseCode::Normal, "no code given: answered 1000, never 1005 (RFC6455§5.5.1, §7.4.1)"),
            (&[0x03], CloseCode::Protocol, "one byte: a code takes two (§5.5.1)"),
            (&[0x03, 0xe8, 0xff], CloseCode::Protocol, "1000 with a reason that is not UTF-8 (§5.5.1, §8.1)"),
            // "κόσμε" then a lone surrogate (ED A0 80), which UTF-8 forbids
            (
                &[0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
                CloseCode::Protocol,
                "an encoded surrogate in the reason (§8.1)",
            ),
            // "é" is two bytes of UTF-8: C3 A9
            (&[0x03, 0xe8, 0xc3, 0xa9], CloseCode::Echo(1000), "1000 with a non-ASCII UTF-8 reason (§5.5.1)"),
        ];
        for (payload, expected, what) in cases {
            assert_eq!(CloseCode::echo(payload), expected, "{what}");
        }
    }

    #[test]
    fn echoed_codes_keep_their_number() {
        assert_eq!(CloseCode::echo(&payload(4321, "ok ✓".as_bytes())).as_u16(), 4321);
        assert_eq!(CloseCode::echo(&[]).as_u16(), 1000);
        assert_eq!(CloseCode::echo(&[0x03]).as_u16(), 1002);
    }
}
