//! A server with an intake runtime (`Server::start_with_intake`): new sessions start
//! there and move to the main runtime once `young_for` old, or at once when they have
//! been sent 32 frames or 64 KiB, with nothing lost or reordered on the way; sessions whose
//! clients vanish while young end there.

mod common;

use std::time::Duration;

use common::{eventually, masked_frame, Client, Pacer, TestServer};
use fenix_core::protocol::{Body, Serializer};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_session_moves_to_the_main_runtime_with_what_it_had_half_read() {
    let t = TestServer::with_intake(|config| config.young_for = Duration::from_millis(300));
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("1", "room:a").await;
    client.send(r#"["1","2","room:a","echo",{"k":1}]"#).await;
    client.expect(r#"["1","2","room:a","phx_reply",{"response":{"k":1},"status":"ok"}]"#).await;
    assert_eq!(t.server.sessions_promoted(), 0, "still young");

    // Half a frame before the move, the rest after it.
    let MaybeTlsStream::Plain(mut tcp) = client.ws.into_inner() else { unreachable!("ws:// is plain TCP") };
    let frame = masked_frame(0x81, br#"["1","3","room:a","echo",{"k":2}]"#);
    let (first, rest) = frame.split_at(frame.len() / 2);
    tcp.write_all(first).await.unwrap();
    eventually("the session moved", || t.server.sessions_promoted() == 1).await;
    tcp.write_all(rest).await.unwrap();
    let ws = WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(tcp), Role::Client, None).await;
    let mut client = Client::new(ws, Serializer::V2, "user_id=u1");
    client.expect(r#"["1","3","room:a","phx_reply",{"response":{"k":2},"status":"ok"}]"#).await;

    // Broadcasts and heartbeats on the main runtime as before.
    Pacer::new().broadcast(&t.server, "room:a", "shout", Body::Json(br#"{"n":1}"#), None).await;
    client.expect(r#"[null,null,"room:a","shout",{"n":1}]"#).await;
    client.heartbeat("4").await;
    assert_eq!(t.server.sessions_promoted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_frames_move_a_young_session_at_once_and_every_frame_arrives_in_order() {
    let t = TestServer::with_intake(|config| config.young_for = Duration::from_secs(3600));
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("1", "room:a").await;
    let pacer = Pacer::new();
    for n in 0..500 {
        pacer.broadcast(&t.server, "room:a", "shout", Body::Json(format!(r#"{{"n":{n}}}"#).as_bytes()), None).await;
    }
    for n in 0..500 {
        let frame: Value = serde_json::from_str(&client.recv_text().await).unwrap();
        assert_eq!(frame[4]["n"], n, "in order, none lost");
    }
    eventually("the session moved", || t.server.sessions_promoted() == 1).await;
    client.send(r#"["1","2","room:a","echo",{"k":1}]"#).await;
    client.expect(r#"["1","2","room:a","phx_reply",{"response":{"k":1},"status":"ok"}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_frame_moves_a_young_session_at_once() {
    let t = TestServer::with_intake(|config| config.young_for = Duration::from_secs(3600));
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("1", "room:a").await;
    let big = "s".repeat(100 * 1024);
    Pacer::new().broadcast(&t.server, "room:a", "presence_state", Body::Json(format!(r#"{{"big":"{big}"}}"#).as_bytes()), None).await;
    client.expect(&format!(r#"[null,null,"room:a","presence_state",{{"big":"{big}"}}]"#)).await;
    eventually("the session moved", || t.server.sessions_promoted() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_sessions_whose_clients_vanish_end_on_the_intake_and_leave_nothing() {
    let t = TestServer::with_intake(|config| config.young_for = Duration::from_secs(3600));
    for i in 0..20 {
        let mut client = t.connect(Serializer::V2, &format!("user_id=u{i}")).await;
        client.join("1", "room:gone").await;
        let MaybeTlsStream::Plain(tcp) = client.ws.into_inner() else { unreachable!("ws:// is plain TCP") };
        if i % 2 == 0 {
            tcp.set_zero_linger().unwrap();
        }
        drop(tcp);
    }
    eventually("every connection untracked", || t.server.connection_count() == 0).await;
    eventually("every channel told", || t.app.closed_channels().len() == 20).await;
    assert_eq!(t.registry().subscriber_count("room:gone"), 0);
    assert_eq!(t.server.sessions_promoted(), 0);
}
