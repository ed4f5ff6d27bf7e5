//! `Server::stop`: what every kind of connection gets when the server stops, and that
//! the port is free for the next server.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{eventually, TestServer, FRAME_TIMEOUT};
use fenix_core::protocol::Serializer;
use fenix_core::server::{Config, Conn, Drained, Server, SocketConfig};
use fenix_core::{ClosedReason, ConnectRequest, Handler, JoinRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_closed_with_1012_and_its_channels_are_told() {
    let t = TestServer::start();
    let mut a = t.connect(Serializer::V2, "user_id=a").await;
    let mut b = t.connect(Serializer::V1, "user_id=b").await;
    a.join("1", "room:a").await;
    b.join("1", "room:b").await;

    t.server.stop();

    assert_eq!(a.expect_close(1012).await, "server restart");
    assert_eq!(b.expect_close(1012).await, "server restart");
    eventually("both channels are told", || t.app.closed_channels().len() == 2).await;
    let mut closed = t.app.closed_channels();
    closed.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        closed,
        [
            ("room:a".to_owned(), Some("1".into()), ClosedReason::ConnectionClosed),
            ("room:b".to_owned(), Some("1".into()), ClosedReason::ConnectionClosed),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_is_released_for_a_new_server() {
    let t = TestServer::start();
    let addr = t.addr();
    t.server.stop();
    // The listener closes on an engine thread, soon after stop returns.
    let rebound = tokio::time::timeout(FRAME_TIMEOUT, async {
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => return listener,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .expect("the port is released");
    assert_eq!(rebound.local_addr().unwrap(), addr);
}

/// A handler that never answers a connect, as when the application is gone.
#[derive(Default)]
struct Unanswered {
    asked: tokio::sync::Notify,
}

impl Handler for Unanswered {
    fn connect(&self, _conn: &Arc<Conn>, _request: ConnectRequest) {
        self.asked.notify_one();
    }
    fn join(&self, _conn: &Arc<Conn>, _request: JoinRequest) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_waiting_for_its_connect_gets_503() {
    let config = Config {
        addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        sockets: vec![SocketConfig::new("/socket")],
        ..Config::default()
    };
    let handler = Arc::new(Unanswered::default());
    let server = Server::start(&tokio::runtime::Handle::current(), config, Arc::clone(&handler) as Arc<dyn Handler>)
        .expect("starts");
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0", server.local_addr());
    let upgrade = tokio::spawn(tokio_tungstenite::connect_async(url));
    tokio::time::timeout(FRAME_TIMEOUT, handler.asked.notified()).await.expect("the connect is asked");
    server.stop();
    let result = tokio::time::timeout(FRAME_TIMEOUT, upgrade).await.expect("answered before connect_timeout");
    match result.expect("no panic") {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected a 503, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_twice_is_harmless() {
    let t = TestServer::start();
    let mut a = t.connect(Serializer::V2, "user_id=a").await;
    t.server.stop();
    t.server.stop();
    assert_eq!(a.expect_close(1012).await, "server restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_closes_a_batch_at_a_time_and_stops_accepting() {
    let t = TestServer::start();
    let mut clients = t.connect_many(5, |_| Serializer::V2, "user_id=d").await;
    for client in clients.iter_mut() {
        client.join("1", "room:d").await;
    }

    let first = t.server.drain("/socket", 2);
    assert_eq!((first.closed, first.left, first.channels.len()), (2, 3, 2), "two closed, with their channels");
    assert_eq!(counts(t.server.drain("/other", 2)), (0, 0), "another socket has none");
    // New connections are refused from the first step on.
    assert!(t.try_connect("vsn=2.0.0&user_id=late", None).await.is_err(), "no upgrade during a drain");

    eventually("the two drained connections' channels are told", || t.app.closed_channels().len() == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(t.app.closed_channels().len(), 2, "and no other");
    assert_eq!(counts(t.server.drain("/socket", 2)), (2, 1));
    assert_eq!(counts(t.server.drain("/socket", 2)), (1, 0), "the last one");
    assert_eq!(counts(t.server.drain("/socket", 2)), (0, 0));
    for client in clients.iter_mut() {
        assert_eq!(client.expect_close(1012).await, "server draining");
    }
    // The stop after a drain has nothing left to close.
    t.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_a_partial_drain_closes_the_rest() {
    let t = TestServer::start();
    let mut clients = t.connect_many(3, |_| Serializer::V2, "user_id=r").await;
    assert_eq!(counts(t.server.drain("/socket", 1)), (1, 2));
    t.server.stop();
    let mut reasons = Vec::new();
    for client in clients.iter_mut() {
        reasons.push(client.expect_close(1012).await);
    }
    reasons.sort();
    assert_eq!(reasons, ["server draining", "server restart", "server restart"]);
}

fn counts(drained: Drained) -> (usize, usize) {
    (drained.closed, drained.left)
}
