//! The server's connection limits: `max_connections` in all and
//! `max_connections_per_address` from one remote address. An upgrade beyond either is
//! answered 503 before the application is asked; the others keep connecting, and a
//! closed connection gives its place back.
//!
//! Clients choose their source address on the loopback network (127.0.0.0/8), so that
//! "another host" is another address on this machine.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{TestServer, FRAME_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a connection from `source` and upgrades it; returns the status and the stream.
async fn upgrade_from(t: &TestServer, source: Ipv4Addr) -> (u16, TcpStream) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let mut stream = socket.connect(t.addr()).await.unwrap();
    let request = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(FRAME_TIMEOUT, stream.read_exact(&mut head)).await.expect("answered").unwrap();
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (status, stream)
}

const HOST_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOST_C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[tokio::test]
async fn one_address_gets_its_share_and_the_others_still_connect() {
    let t = TestServer::with_config(|config| config.max_connections_per_address = 2);
    let (first, a1) = upgrade_from(&t, HOST_A).await;
    let (second, _a2) = upgrade_from(&t, HOST_A).await;
    assert_eq!((first, second), (101, 101));
    assert_eq!(upgrade_from(&t, HOST_A).await.0, 503, "a third from the same address");
    assert_eq!(upgrade_from(&t, HOST_B).await.0, 101, "another address is not affected");

    // A closed connection gives its place back, once its session has seen the close.
    drop(a1);
    let mut retried = 503;
    for _ in 0..250 {
        retried = upgrade_from(&t, HOST_A).await.0;
        if retried == 101 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(retried, 101, "the place of the closed connection is taken again");
}

#[tokio::test]
async fn the_server_holds_at_most_max_connections() {
    let t = TestServer::with_config(|config| config.max_connections = 2);
    let (_a, _b) = (upgrade_from(&t, HOST_A).await, upgrade_from(&t, HOST_B).await);
    assert_eq!(upgrade_from(&t, HOST_C).await.0, 503);
}
