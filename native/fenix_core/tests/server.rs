//! The server end to end: a real `Server` on 127.0.0.1:0, the plain-Rust test application
//! of `common`, and a real WebSocket client (tokio-tungstenite).
//!
//! Frames are written as the 2.0.0 arrays of `shared/vectors/phoenix_wire_frames.md`;
//! cases shared by both serializers run over `SERIALIZERS`, and a 1.0.0 client sees the
//! same frames as objects (pinned literally in `missing_vsn_means_serializer_1`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, ChannelProcess, Client, Pacer, TestServer, SERIALIZERS};
use fenix_core::protocol::{Body, Serializer};
use fenix_core::fanout::Broadcast;
use fenix_core::server::{Broadcasted, Pace};
use fenix_core::{ClosedReason, EncodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

// ---------------------------------------------------------------------------------------
// HTTP: upgrade, refusal, routing
// ---------------------------------------------------------------------------------------

const UPGRADE_HEADERS: &str = "host: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                               sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n";

/// A raw WebSocket upgrade request of `target` with `extra` header lines.
fn upgrade_request(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\n{UPGRADE_HEADERS}{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_echoes_the_phoenix_subprotocol_and_decodes_the_auth_token() {
    let t = TestServer::start();
    // phoenix.js with `authToken: "my token"`: btoa, URL-safe alphabet, no padding.
    let offered = "phoenix, base64url.bearer.phx.bXkgdG9rZW4";
    let (ws, response) = t.try_connect("user_id=u1&vsn=2.0.0", Some(offered)).await.expect("accepted");

    assert_eq!(response.status(), 101);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("sec-websocket-protocol").as_deref(), Some("phoenix"));
    assert_eq!(header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(header("cache-control").as_deref(), Some("max-age=0, private, must-revalidate"));

    let connects = t.app.connects();
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0].auth_token.as_deref(), Some("my token"));
    assert_eq!(connects[0].params, [("user_id".to_owned(), "u1".to_owned()), ("vsn".to_owned(), "2.0.0".to_owned())]);
    assert_eq!(connects[0].uri, "/socket/websocket?user_id=u1&vsn=2.0.0");

    let mut client = Client::new(ws, Serializer::V2, "user_id=u1");
    client.heartbeat("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_a_subprotocol_answers_none() {
    let t = TestServer::start();
    let (_ws, response) = t.try_connect("vsn=2.0.0", None).await.expect("accepted");
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers().get("sec-websocket-protocol"), None);
    assert_eq!(t.app.connects()[0].auth_token, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_answers_403() {
    let t = TestServer::start();
    let forbidden = "HTTP/1.1 403 Forbidden\r\n\
                     content-length: 0\r\n\
                     vary: accept-encoding\r\n\
                     cache-control: max-age=0, private, must-revalidate\r\n\
                     connection: close\r\n\r\n";
    // token=deny in the query
    assert_eq!(t.raw_http(&upgrade_request("/socket/websocket?token=deny&vsn=2.0.0", "")).await, forbidden);
    // an auth token of "deny" ("ZGVueQ" = base64url("deny"))
    let protocols = "sec-websocket-protocol: phoenix, base64url.bearer.phx.ZGVueQ\r\n";
    assert_eq!(t.raw_http(&upgrade_request("/socket/websocket?vsn=2.0.0", protocols)).await, forbidden);
    // and through a WebSocket client
    match t.try_connect("token=deny&vsn=1.0.0", None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_answer_404() {
    let t = TestServer::start();
    let not_found = "HTTP/1.1 404 Not Found\r\n\
                     content-length: 0\r\n\
                     vary: accept-encoding\r\n\
                     cache-control: max-age=0, private, must-revalidate\r\n\
                     connection: close\r\n\r\n";
    assert_eq!(t.raw_http("GET /nope HTTP/1.1\r\nhost: localhost\r\n\r\n").await, not_found);
    assert_eq!(t.raw_http("GET /socket HTTP/1.1\r\nhost: localhost\r\n\r\n").await, not_found);
    assert_eq!(t.raw_http(&upgrade_request("/other/websocket?vsn=2.0.0", "")).await, not_found);
    assert!(t.app.connects().is_empty());
}

// ---------------------------------------------------------------------------------------
// Channel protocol, both serializers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_vsn_means_serializer_1() {
    let t = TestServer::start();
    let (ws, _) = t.try_connect("user_id=u1", None).await.expect("accepted");
    let mut client = Client::new(ws, Serializer::V1, "");
    client.send_message(Message::text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}"#)).await;
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"phoenix"}"#
    );
    client
        .send_message(Message::text(r#"{"topic":"room:v1","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}"#))
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"{"event":"phx_reply","payload":{"response":{"joined":"room:v1","user_id":"u1"},"status":"ok"},"ref":"3","topic":"room:v1"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_gets_an_empty_ok_reply() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"[null,"4","phoenix","heartbeat",{}]"#).await;
        client.expect(r#"[null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_accepted_or_refused() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["3","3","room:lobby","phx_join",{}]"#).await;
        client
            .expect(r#"["3","3","room:lobby","phx_reply",{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}]"#)
            .await;
        client.send(r#"["37","37","room:private","phx_join",{}]"#).await;
        client
            .expect(r#"["37","37","room:private","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#)
            .await;
        // A refused join leaves nothing behind: the topic is not joined.
        client.send(r#"["37","38","room:private","echo",{}]"#).await;
        client
            .expect(
                r#"[null,"38","room:private","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_replied_to() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.join("3", "room:lobby").await;
        client.send(r#"["3","5","room:lobby","echo",{"hello":"world","n":1}]"#).await;
        client.expect(r#"["3","5","room:lobby","phx_reply",{"response":{"hello":"world","n":1},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_of_any_json_value_come_back_as_they_came() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        // Integer refs and no join_ref, as Python's phxsocket sends them (vsn 1.0.0).
        client.send(r#"[null,0,"phoenix","heartbeat",{}]"#).await;
        client.expect(r#"[null,0,"phoenix","phx_reply",{"response":{},"status":"ok"}]"#).await;
        client.send(r#"[null,1,"room:py","phx_join",{}]"#).await;
        client.expect(r#"[null,1,"room:py","phx_reply",{"response":{"joined":"room:py","user_id":"u1"},"status":"ok"}]"#).await;
        client.send(r#"[null,2,"room:py","echo",{"n":2}]"#).await;
        client.expect(r#"[null,2,"room:py","phx_reply",{"response":{"n":2},"status":"ok"}]"#).await;
        // Numbers, floats, booleans, arrays and objects, as join_ref and as ref.
        client.send(r#"[7,-3,"room:any","phx_join",{}]"#).await;
        client.expect(r#"[7,-3,"room:any","phx_reply",{"response":{"joined":"room:any","user_id":"u1"},"status":"ok"}]"#).await;
        for r#ref in ["2.5", "true", r#"[1,"a"]"#, r#"{"id":9}"#, r#""s""#] {
            client.send(&format!(r#"[7,{ref},"room:any","echo",{{}}]"#)).await;
            client.expect(&format!(r#"[7,{ref},"room:any","phx_reply",{{"response":{{}},"status":"ok"}}]"#)).await;
        }
        // Compared as values: "7" is not 7, so this one is stale and dropped.
        client.send(r#"["7",8,"room:any","echo",{"stale":true}]"#).await;
        client.send(r#"[7,9,"room:any","echo",{"current":true}]"#).await;
        client.expect(r#"[7,9,"room:any","phx_reply",{"response":{"current":true},"status":"ok"}]"#).await;
        // A number join_ref closes as a number, in both slots.
        client.send(r#"[7,10,"room:any","phx_leave",{}]"#).await;
        client.expect(r#"[7,10,"room:any","phx_reply",{"response":{},"status":"ok"}]"#).await;
        client.expect(r#"[7,7,"room:any","phx_close",{}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_reply_to_number_refs_carries_their_text() {
    // Phoenix's binary reply writes `to_string(ref)`: 3 and 14 become "3" and "14".
    let t = TestServer::start();
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.send(r#"[3,3,"room:lobby","phx_join",{}]"#).await;
    client.expect(r#"[3,3,"room:lobby","phx_reply",{"response":{"joined":"room:lobby","user_id":"u1"},"status":"ok"}]"#).await;
    client.send(r#"[3,14,"room:lobby","echo_binary",{}]"#).await;
    assert_eq!(client.recv().await, Message::binary(LOBBY_BINARY_REPLY.to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_push_gets_a_binary_reply() {
    let t = TestServer::start();
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("3", "room:lobby").await;
    #[rustfmt::skip]
    let push = [
        0x00, 0x01, 0x02, 0x0a, 0x04, // kind push, len(join_ref) len(ref) len(topic) len(event)
        b'3',                         // join_ref
        b'1', b'4',                   // ref
        b'r', b'o', b'o', b'm', b':', b'l', b'o', b'b', b'b', b'y', // topic
        b'e', b'c', b'h', b'o',       // event
        0x00, 0x01, 0x02, 0x03, 0xfe, 0xff, // payload
    ];
    client.send_message(Message::binary(push.to_vec())).await;
    assert_eq!(client.recv().await, Message::binary(LOBBY_BINARY_REPLY.to_vec()));
}

/// The binary reply `ok` with 00 01 02 03 fe ff to the push "14" of room:lobby joined as
/// "3", or as 3 with ref 14.
#[rustfmt::skip]
const LOBBY_BINARY_REPLY: &[u8] = &[
    0x01, 0x01, 0x02, 0x0a, 0x02, // kind reply, len(join_ref) len(ref) len(topic) len(status)
    b'3',                         // join_ref
    b'1', b'4',                   // ref
    b'r', b'o', b'o', b'm', b':', b'l', b'o', b'b', b'b', b'y', // topic
    b'o', b'k',                   // status
    0x00, 0x01, 0x02, 0x03, 0xfe, 0xff, // payload
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_is_reassembled() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.join("3", "room:lobby").await;
        let text = common::client_frame(serializer, r#"["3","5","room:lobby","echo",{"parts":3}]"#);
        let (a, rest) = text.split_at(5);
        let (b, c) = rest.split_at(10);
        client.send_message(Message::Frame(Frame::message(a.to_owned(), OpCode::Data(Data::Text), false))).await;
        client.send_message(Message::Ping(Bytes::from_static(b"between fragments"))).await;
        assert_eq!(client.recv().await, Message::Pong(Bytes::from_static(b"between fragments")));
        client.send_message(Message::Frame(Frame::message(b.to_owned(), OpCode::Data(Data::Continue), false))).await;
        client.send_message(Message::Frame(Frame::message(c.to_owned(), OpCode::Data(Data::Continue), true))).await;
        client.expect(r#"["3","5","room:lobby","phx_reply",{"response":{"parts":3},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_to_a_topic_never_joined_gets_unmatched_topic() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"[null,"5","room:never","echo",{}]"#).await;
        client
            .expect(r#"[null,"5","room:never","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_of_a_topic_not_joined_is_ok() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["9","10","room:never","phx_leave",{}]"#).await;
        client.expect(r#"["9","10","room:never","phx_reply",{"response":{},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_replies_ok_then_closes_the_channel() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.join("33", "room:leavy").await;
        client.send(r#"["33","34","room:leavy","phx_leave",{}]"#).await;
        client.expect(r#"["33","34","room:leavy","phx_reply",{"response":{},"status":"ok"}]"#).await;
        client.expect(r#"["33","33","room:leavy","phx_close",{}]"#).await;
        eventually("the channel unsubscribes", || t.registry().subscriber_count("room:leavy") == 0).await;
        client.send(r#"["33","35","room:leavy","echo",{}]"#).await;
        client
            .expect(
                r#"[null,"35","room:leavy","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_join_replies_then_closes_the_old_channel() {
    let t = TestServer::start();
    let mut clients = Vec::new();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=dup").await;
        client.join("1", "room:dup").await;
        client.send(r#"["2","2","room:dup","phx_join",{}]"#).await;
        client
            .expect(
                r#"["2","2","room:dup","phx_reply",{"response":{"joined":"room:dup","user_id":"dup"},"status":"ok"}]"#,
            )
            .await;
        client.expect(r#"["1","1","room:dup","phx_close",{}]"#).await;
        client.send(r#"["2","3","room:dup","echo",{"after":"rejoin"}]"#).await;
        client.expect(r#"["2","3","room:dup","phx_reply",{"response":{"after":"rejoin"},"status":"ok"}]"#).await;
        clients.push(client);
        assert_eq!(t.registry().subscriber_count("room:dup"), clients.len(), "one subscription per connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_with_a_stale_join_ref_is_dropped() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=dup").await;
        client.join("1", "room:dup").await;
        client.join("2", "room:dup").await;
        client.expect(r#"["1","1","room:dup","phx_close",{}]"#).await;

        client.send(r#"["1","4","room:dup","echo",{"stale":true}]"#).await;
        // The next frame answers the next message: the stale one got nothing.
        client.send(r#"["2","5","room:dup","echo",{"current":true}]"#).await;
        client.expect(r#"["2","5","room:dup","phx_reply",{"response":{"current":true},"status":"ok"}]"#).await;
        // A null join_ref is accepted.
        client.send(r#"[null,"6","room:dup","echo",{"null":true}]"#).await;
        client.expect(r#"["2","6","room:dup","phx_reply",{"response":{"null":true},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_channel_is_refused() {
    let t = TestServer::start();
    assert_eq!(fenix_core::server::SocketConfig::new("/socket").max_channels, 100);
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        for i in 0..100 {
            client.join(&i.to_string(), &format!("room:{i}")).await;
        }
        client.send(r#"["100","100","room:100","phx_join",{}]"#).await;
        client
            .expect(r#"["100","100","room:100","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]"#)
            .await;
        // Rejoining a joined topic does not add a channel.
        client.join("101", "room:0").await;
        client.expect(r#"["0","0","room:0","phx_close",{}]"#).await;
        // Leaving one makes room for another.
        client.send(r#"["1","102","room:1","phx_leave",{}]"#).await;
        client.expect(r#"["1","102","room:1","phx_reply",{"response":{},"status":"ok"}]"#).await;
        client.expect(r#"["1","1","room:1","phx_close",{}]"#).await;
        client.join("103", "room:100").await;
    }
}

// ---------------------------------------------------------------------------------------
// Messages held while a join is answered
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_the_join_is_answered_follow_the_join_reply() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["1","1","room:slow","phx_join",{}]"#).await;
        client.send(r#"["1","2","room:slow","echo",{"n":1}]"#).await;
        client.send(r#"["1","3","room:slow","echo",{"n":2}]"#).await;
        client.heartbeat("4").await; // the echoes were read and are held: nothing came before this reply

        let (conn, join) = t.app.next_deferred_join().await;
        t.app.answer_join(&conn, join);
        client
            .expect(
                r#"["1","1","room:slow","phx_reply",{"response":{"joined":"room:slow","user_id":"u1"},"status":"ok"}]"#,
            )
            .await;
        client.expect(r#"["1","2","room:slow","phx_reply",{"response":{"n":1},"status":"ok"}]"#).await;
        client.expect(r#"["1","3","room:slow","phx_reply",{"response":{"n":2},"status":"ok"}]"#).await;
        client.send(r#"["1","5","room:slow","echo",{"n":3}]"#).await;
        client.expect(r#"["1","5","room:slow","phx_reply",{"response":{"n":3},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_messages_before_the_join_is_answered_close_with_1008() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["1","1","room:slow","phx_join",{}]"#).await;
        for i in 0..65 {
            client.send(&format!(r#"["1","{}","room:slow","echo",{{}}]"#, i + 2)).await;
        }
        assert!(client.expect_close(1008).await.contains("before their join was answered"));
        let _ = t.app.next_deferred_join().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_for_a_refused_join_are_answered_as_not_joined() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["1","1","room:slow","phx_join",{}]"#).await;
        client.send(r#"["1","2","room:slow","echo",{}]"#).await;
        client.send(r#"["1","3","room:slow","phx_leave",{}]"#).await;
        client.heartbeat("4").await;

        let (conn, join) = t.app.next_deferred_join().await;
        t.app.refuse_join(&conn, &join, "unauthorized");
        client
            .expect(r#"["1","1","room:slow","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]"#)
            .await;
        // As in Phoenix, where the socket handles them after the join returned.
        client
            .expect(r#"[null,"2","room:slow","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#)
            .await;
        client.expect(r#"["1","3","room:slow","phx_reply",{"response":{},"status":"ok"}]"#).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reply_comes_before_any_broadcast_to_the_topic() {
    let t = TestServer::with(|socket| socket.outbox_capacity = 1 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    let broadcaster = {
        let (server, stop) = (Arc::clone(&t.server), Arc::clone(&stop));
        std::thread::spawn(move || {
            // Paced, so that the broadcaster's lane stays short; every join still
            // races many broadcasts.
            let pacer = Pacer::new();
            while !stop.load(Ordering::Relaxed) {
                let _ = pacer.broadcast_now(&server, "room:race", "tick", Body::Json(b"{}"), None);
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    };
    for (i, serializer) in SERIALIZERS.into_iter().cycle().take(40).enumerate() {
        let mut client = t.connect(serializer, &format!("user_id=r{i}")).await;
        client.join("1", "room:race").await; // fails if a tick comes first
    }
    stop.store(true, Ordering::Relaxed);
    broadcaster.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Broadcasts
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shout_reaches_every_member_in_its_own_serializer() {
    let t = TestServer::start();
    let mut v1 = t.connect(Serializer::V1, "user_id=a").await;
    let mut v2 = t.connect(Serializer::V2, "user_id=b").await;
    v1.join("3", "room:lobby").await;
    v2.join("3", "room:lobby").await;
    v2.send(r#"["3","7","room:lobby","shout",{"msg":"hi all"}]"#).await;
    assert_eq!(v2.recv_text().await, r#"[null,null,"room:lobby","shout",{"msg":"hi all"}]"#);
    assert_eq!(v1.recv_text().await, r#"{"event":"shout","payload":{"msg":"hi all"},"ref":null,"topic":"room:lobby"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_from_excludes_the_sender() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut sender = t.connect(serializer, "user_id=u1").await;
        let mut other = t.connect(serializer, "user_id=u2").await;
        sender.join("3", "room:from").await;
        other.join("3", "room:from").await;
        sender.send(r#"["3","8","room:from","shout_from",{"msg":"not me"}]"#).await;
        other.expect(r#"[null,null,"room:from","shout",{"msg":"not me"}]"#).await;
        // The channel broadcasts before it replies: a shout for the sender would come first.
        sender.expect(r#"["3","8","room:from","phx_reply",{"response":{},"status":"ok"}]"#).await;
        sender.heartbeat("9").await;
        sender.send(r#"["3","10","room:from","phx_leave",{}]"#).await;
        other.send(r#"["3","10","room:from","phx_leave",{}]"#).await;
        for client in [&mut sender, &mut other] {
            client.expect(r#"["3","10","room:from","phx_reply",{"response":{},"status":"ok"}]"#).await;
            client.expect(r#"["3","3","room:from","phx_close",{}]"#).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_fan_out_to_every_subscriber_in_order_per_topic() {
    const CLIENTS: usize = 200;
    const PER_TOPIC: usize = 100;
    let topics = ["room:a", "room:b"];
    let t = TestServer::start();
    let mut clients = t.connect_many(CLIENTS, |i| SERIALIZERS[i % 2], "user_id=fan").await;
    futures_util::future::join_all(clients.iter_mut().map(|client| async move {
        client.join("1", "room:a").await;
        client.join("2", "room:b").await;
    }))
    .await;
    // Fan-out targets are added in the outbound order, right after each join reply.
    eventually("everyone is a fan-out target", || {
        t.registry().subscriber_count("room:a") == CLIENTS && t.registry().subscriber_count("room:b") == CLIENTS
    })
    .await;

    // One broadcaster per topic, concurrently.
    let broadcasters: Vec<_> = topics
        .into_iter()
        .map(|topic| {
            let server = Arc::clone(&t.server);
            std::thread::spawn(move || {
                let pacer = Pacer::new();
                for i in 1..=PER_TOPIC {
                    let body = format!(r#"{{"i":{i}}}"#);
                    let pace = pacer.broadcast_now(&server, topic, "tick", Body::Json(body.as_bytes()), None);
                    assert_eq!(pace, Pace::Go, "{PER_TOPIC} broadcasts fit a lane");
                }
            })
        })
        .collect();
    for broadcaster in broadcasters {
        broadcaster.join().unwrap();
    }

    futures_util::future::join_all(clients.iter_mut().map(|client| async move {
        let mut next = [1; 2];
        for _ in 0..2 * PER_TOPIC {
            let frame = client.recv_text().await;
            let topic = if frame.contains("room:a") { 0 } else { 1 };
            let expected = format!(r#"[null,null,"{}","tick",{{"i":{}}}]"#, topics[topic], next[topic]);
            assert_eq!(frame, common::server_frame(client.serializer, &expected));
            next[topic] += 1;
        }
        client.heartbeat("3").await; // and nothing more
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_broadcast_closes_every_connection_of_the_socket_id() {
    let t = TestServer::start();
    let mut dc1 = t.connect(Serializer::V2, "user_id=dc").await;
    let mut dc2 = t.connect(Serializer::V1, "user_id=dc").await;
    let mut other = t.connect(Serializer::V2, "user_id=other").await;
    for client in [&mut dc1, &mut dc2, &mut other] {
        client.join("1", "room:dc").await;
    }
    Pacer::new().broadcast(&t.server, "users_socket:dc", "disconnect", Body::Json(b"{}"), None).await;
    assert_eq!(dc1.expect_close(1001).await, "");
    assert_eq!(dc2.expect_close(1001).await, "");
    other.send(r#"["1","2","room:dc","echo",{"still":"here"}]"#).await;
    other.expect(r#"["1","2","room:dc","phx_reply",{"response":{"still":"here"},"status":"ok"}]"#).await;
    eventually("the closed connections unsubscribe", || t.registry().subscriber_count("room:dc") == 1).await;
}

// ---------------------------------------------------------------------------------------
// Bad input and limits: only the offending connection closes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    const MAX_FRAME: usize = 1024;
    let t = TestServer::with(|socket| socket.max_frame_size = MAX_FRAME);
    let mut bystander = t.connect(Serializer::V2, "user_id=ok").await;
    bystander.join("1", "room:lobby").await;

    let oversize = format!(r#"["1","1","room:lobby","echo",{{"pad":"{}"}}]"#, "x".repeat(MAX_FRAME));
    let valid_binary_push = b"\x00\x01\x01\x0a\x04\x31\x32room:lobbyecho\x00".to_vec();
    let cases: Vec<(&str, Serializer, Message, u16)> = vec![
        ("malformed JSON", Serializer::V2, Message::text(r#"["1","2","room:lobby""#), 1007),
        ("malformed JSON", Serializer::V1, Message::text(r#"{"topic":"#), 1007),
        ("object on vsn 2", Serializer::V2, Message::text(r#"{"topic":"t","event":"e","payload":{},"ref":"1"}"#), 1007),
        ("array on vsn 1", Serializer::V1, Message::text(r#"["1","1","room:lobby","echo",{}]"#), 1007),
        ("number as topic", Serializer::V2, Message::text(r#"["1","1",7,"echo",{}]"#), 1007),
        ("too few elements", Serializer::V2, Message::text(r#"["1","1","room:lobby","echo"]"#), 1007),
        ("binary on vsn 1", Serializer::V1, Message::binary(valid_binary_push), 1007),
        ("truncated binary", Serializer::V2, Message::binary(b"\x00\x05".to_vec()), 1007),
        ("oversize frame", Serializer::V2, Message::text(oversize.clone()), 1009),
        ("oversize frame", Serializer::V1, Message::text(oversize), 1009),
    ];
    for (i, (what, serializer, message, code)) in cases.into_iter().enumerate() {
        let mut victim = t.connect(serializer, "user_id=bad").await;
        victim.join("1", "room:lobby").await;
        victim.send_message(message).await;
        victim.expect_close(code).await;
        assert_eq!(victim.drain().await, (0, false), "{what}: nothing after the close frame");

        bystander.send(&format!(r#"["1","{i}","room:lobby","echo",{{"after":"{what}"}}]"#)).await;
        bystander
            .expect(&format!(
                r#"["1","{i}","room:lobby","phx_reply",{{"response":{{"after":"{what}"}},"status":"ok"}}]"#
            ))
            .await;
    }
    eventually("the closed connections unsubscribe", || t.registry().subscriber_count("room:lobby") == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_at_the_size_limit_is_accepted() {
    let t = TestServer::with(|socket| socket.max_frame_size = 1024);
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("1", "room:lobby").await;
    let prefix = r#"["1","2","room:lobby","echo",{"pad":""#;
    let frame = format!(r#"{prefix}{}"}}]"#, "x".repeat(1024 - prefix.len() - 3));
    assert_eq!(frame.len(), 1024);
    client.send(&frame).await;
    assert!(client.recv_text().await.starts_with(r#"["1","2","room:lobby","phx_reply",{"response":{"pad":"xxx"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_does_not_read_is_disconnected_when_its_outbox_fills() {
    let t = TestServer::with(|socket| socket.outbox_capacity = 8);
    let mut slow = t.connect(Serializer::V2, "user_id=slow").await;
    let mut reader = t.connect(Serializer::V2, "user_id=reader").await;
    slow.join("1", "room:flood").await;
    reader.join("1", "room:flood").await;
    eventually("both are fan-out targets", || t.registry().subscriber_count("room:flood") == 2).await;

    // From now on `slow` is not read: its socket buffers fill, then its outbox.
    let body = format!(r#"{{"blob":"{}"}}"#, "x".repeat(64 * 1024));
    let expected = format!(r#"[null,null,"room:flood","blob",{body}]"#);
    let (pacer, mut sent) = (Pacer::new(), 0);
    while t.registry().subscriber_count("room:flood") == 2 {
        pacer.broadcast(&t.server, "room:flood", "blob", Body::Json(body.as_bytes()), None).await;
        sent += 1;
        assert_eq!(reader.recv_text().await, expected, "the reader gets every broadcast");
        assert!(sent < 10_000, "the slow client was never disconnected");
    }

    reader.send(r#"["1","2","room:flood","echo",{"still":"here"}]"#).await;
    reader.expect(r#"["1","2","room:flood","phx_reply",{"response":{"still":"here"},"status":"ok"}]"#).await;
    let (received, closed) = slow.drain().await;
    assert!(received < sent, "the slow client got {received} of {sent} broadcasts");
    assert!(!closed, "a slow reader is dropped without a close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_whose_socket_takes_nothing_for_slow_reader_timeout_is_dropped() {
    // An outbox too large to fill: only the time rule can drop the slow client.
    let t = TestServer::with(|socket| {
        socket.slow_reader_timeout = Duration::from_millis(300);
        socket.outbox_capacity = 1 << 20;
        socket.outbox_capacity_bytes = 1 << 30;
    });
    let mut slow = t.connect(Serializer::V2, "user_id=slow").await;
    let mut reader = t.connect(Serializer::V2, "user_id=reader").await;
    slow.join("1", "room:stall").await;
    reader.join("1", "room:stall").await;
    eventually("both are fan-out targets", || t.registry().subscriber_count("room:stall") == 2).await;

    // `slow` is not read from now on; once its socket buffers are full, its writer
    // waits, and after slow_reader_timeout it is dropped.
    let body = format!(r#"{{"blob":"{}"}}"#, "x".repeat(64 * 1024));
    let expected = format!(r#"[null,null,"room:stall","blob",{body}]"#);
    let (pacer, mut sent) = (Pacer::new(), 0);
    while t.registry().subscriber_count("room:stall") == 2 {
        pacer.broadcast(&t.server, "room:stall", "blob", Body::Json(body.as_bytes()), None).await;
        sent += 1;
        assert_eq!(reader.recv_text().await, expected, "the reader gets every broadcast");
        if sent > 1_000 {
            // The buffers are full well before: now only time passes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sent < 5_000, "the stalled client was never dropped");
    }
    assert_eq!(t.server.slow_readers_dropped(), 1, "counted");
    let (received, closed) = slow.drain().await;
    assert!(received < sent && !closed, "dropped without a close frame after {received} of {sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_with_1002() {
    let t = TestServer::with(|socket| socket.timeout = Duration::from_millis(300));
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=idle").await;
        client.join("1", "room:idle").await;
        assert_eq!(client.expect_close(1002).await, "");
    }
    eventually("the idle connections unsubscribe", || t.registry().subscriber_count("room:idle") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_answered_with_its_own_code() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=bye").await;
        client.join("1", "room:bye").await;
        client.ws.close(None).await.unwrap();
        assert_eq!(client.expect_close(1000).await, "");
        let mut client = t.connect(serializer, "user_id=bye").await;
        client.join("1", "room:bye").await;
        let going_away = CloseFrame { code: CloseCode::Away, reason: "".into() };
        client.ws.close(Some(going_away)).await.unwrap();
        assert_eq!(client.expect_close(1001).await, "");
    }
    eventually("the closed connections unsubscribe", || t.registry().subscriber_count("room:bye") == 0).await;
}

// ---------------------------------------------------------------------------------------
// The registry and the channels, as the application sees them
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepting_subscribers_are_handed_to_the_caller() {
    let t = TestServer::start();
    let mut plain = t.connect(Serializer::V2, "user_id=plain").await;
    let mut intercepting = t.connect(Serializer::V1, "user_id=intercepting").await;
    plain.join("1", "room:out").await;
    intercepting.send(r#"["1","1","room:out","phx_join",{"intercept":["secret"]}]"#).await;
    intercepting
        .expect(r#"["1","1","room:out","phx_reply",{"response":{"joined":"room:out","user_id":"intercepting"},"status":"ok"}]"#)
        .await;

    // Interceptors are registered with the join; fan-out targets right after its reply.
    assert_eq!(t.registry().interceptor_count("room:out", "secret"), 1);
    eventually("both are fan-out targets", || t.registry().subscriber_count("room:out") == 2).await;
    let pacer = Pacer::new();
    let broadcast = |event, body| {
        let mut handed = Vec::new();
        let message = Broadcast { event, body: Body::Json(body), exclude: None };
        let done = t.server.broadcast(pacer.sender(), &message, "room:out", usize::MAX, |sink| {
            handed.push(sink.as_any().downcast_ref::<ChannelProcess>().expect("the test's sink").conn_id);
        });
        assert_eq!(done, Ok(Broadcasted::Queued(Pace::Go)));
        handed
    };
    assert_eq!(broadcast("secret", br#"{"s":1}"#), [t.app.conn_id("intercepting")]);
    plain.expect(r#"[null,null,"room:out","secret",{"s":1}]"#).await;
    let message = Broadcast { event: "secret", body: Body::Json(b"{}"), exclude: None };
    let refused = t.server.broadcast(pacer.sender(), &message, "room:out", 0, |_| panic!("not handed out"));
    assert_eq!(refused, Ok(Broadcasted::TooManyInterceptors(1)), "over the caller's limit nothing is done");

    // A binary broadcast whose topic is too long for a binary frame is refused before
    // anything is done: no interceptor is handed it, no subscriber gets a frame.
    let topic = "room:".repeat(60);
    let message = Broadcast { event: "secret", body: Body::Binary(b"\x01"), exclude: None };
    let refused = t.server.broadcast(pacer.sender(), &message, &topic, usize::MAX, |_| panic!("not handed out"));
    assert_eq!(refused, Err(EncodeError::FieldTooLong { field: "topic", size: 300 }));

    // Other events reach both directly; the intercepting client got nothing before.
    assert!(broadcast("public", br#"{"p":2}"#).is_empty());
    plain.expect(r#"[null,null,"room:out","public",{"p":2}]"#).await;
    intercepting.expect(r#"[null,null,"room:out","public",{"p":2}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_broadcasts_keep_order_exclusions_and_interceptions() {
    let t = TestServer::start();
    let mut plain = t.connect(Serializer::V2, "user_id=plain").await;
    let mut intercepting = t.connect(Serializer::V1, "user_id=intercepting").await;
    plain.join("1", "room:group").await;
    intercepting.send(r#"["1","1","room:group","phx_join",{"intercept":["secret"]}]"#).await;
    intercepting
        .expect(r#"["1","1","room:group","phx_reply",{"response":{"joined":"room:group","user_id":"intercepting"},"status":"ok"}]"#)
        .await;
    eventually("both are fan-out targets", || t.registry().subscriber_count("room:group") == 2).await;

    let plain_id = t.app.conn_id("plain");
    let pacer = Pacer::new();
    // One sender's burst: the worker fans consecutive broadcasts to a topic out together.
    for (event, body, exclude) in [
        ("a", Body::Json(br#"{"n":1}"#), None),
        ("secret", Body::Json(br#"{"n":2}"#), None),
        ("b", Body::Json(br#"{"n":3}"#), Some(plain_id)),
        ("c", Body::Binary(b"\x01"), None),
    ] {
        let _ = pacer.broadcast_now(&t.server, "room:group", event, body, exclude);
    }
    // plain: a, secret, c (b excluded); intercepting (vsn 1.0.0): a, b (secret intercepted, binary not carried).
    plain.expect(r#"[null,null,"room:group","a",{"n":1}]"#).await;
    plain.expect(r#"[null,null,"room:group","secret",{"n":2}]"#).await;
    match plain.recv().await {
        Message::Binary(data) => assert_eq!(&data[..], b"\x02\x0a\x01room:groupc\x01"),
        other => panic!("expected the binary broadcast, got {other:?}"),
    }
    intercepting.expect(r#"[null,null,"room:group","a",{"n":1}]"#).await;
    intercepting.expect(r#"[null,null,"room:group","b",{"n":3}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_told_when_replaced_or_when_the_connection_closes() {
    let t = TestServer::start();
    let mut client = t.connect(Serializer::V2, "user_id=u1").await;
    client.join("1", "room:a").await;
    client.join("2", "room:a").await;
    client.expect(r#"["1","1","room:a","phx_close",{}]"#).await;
    client.join("3", "room:b").await;
    eventually("the replaced channel is told", || !t.app.closed_channels().is_empty()).await;
    assert_eq!(t.app.closed_channels(), [("room:a".to_owned(), Some("1".into()), ClosedReason::DuplicateJoin)]);

    drop(client); // the TCP connection ends without a close frame
    eventually("both channels are told", || t.app.closed_channels().len() == 3).await;
    let mut closed = t.app.closed_channels().split_off(1);
    closed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        closed,
        [
            ("room:a".to_owned(), Some("2".into()), ClosedReason::ConnectionClosed),
            ("room:b".to_owned(), Some("3".into()), ClosedReason::ConnectionClosed),
        ]
    );
    assert_eq!(t.registry().topic_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_counts_follow_joins_leaves_and_closes() {
    let t = TestServer::start();
    let mut clients = t.connect_many(3, |i| SERIALIZERS[i % 2], "user_id=count").await;
    for client in &mut clients {
        client.join("1", "room:x").await;
        client.join("2", "room:y").await;
    }
    assert_eq!((t.registry().subscriber_count("room:x"), t.registry().topic_count()), (3, 2));

    clients[0].send(r#"["1","3","room:x","phx_leave",{}]"#).await;
    clients[0].expect(r#"["1","3","room:x","phx_reply",{"response":{},"status":"ok"}]"#).await;
    clients[0].expect(r#"["1","1","room:x","phx_close",{}]"#).await;
    assert_eq!(t.registry().subscriber_count("room:x"), 2);

    clients.truncate(1);
    eventually("closed connections unsubscribe", || t.registry().subscriber_count("room:y") == 1).await;
    assert_eq!((t.registry().subscriber_count("room:x"), t.registry().topic_count()), (0, 1));
    Pacer::new().broadcast(&t.server, "room:x", "e", Body::Json(b"{}"), None).await;
}

// ---------------------------------------------------------------------------------------
// Raw bytes: what a WebSocket library would hide
// ---------------------------------------------------------------------------------------

/// A masked client text frame (payload < 126 bytes).
fn masked_text(payload: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).expect("short payload")];
    frame.extend_from_slice(&mask);
    frame.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame with a payload < 126 bytes: (first byte, payload).
async fn read_server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    tokio::time::timeout(common::FRAME_TIMEOUT, stream.read_exact(&mut header)).await.expect("a frame").unwrap();
    assert!(header[1] < 126, "unmasked, short: {header:?}");
    let mut payload = vec![0u8; usize::from(header[1])];
    stream.read_exact(&mut payload).await.unwrap();
    (header[0], payload)
}

/// Opens a raw WebSocket to `t` (vsn 2.0.0) and reads the 101 head.
async fn raw_upgraded(t: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(t.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(upgrade_request("/socket/websocket?vsn=2.0.0", "").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(common::FRAME_TIMEOUT, stream.read_exact(&mut byte)).await.expect("a head").unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

fn heartbeat(r: usize) -> Vec<u8> {
    masked_text(&format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#))
}

fn heartbeat_ok(r: usize) -> (u8, Vec<u8>) {
    (0x81, format!(r#"[null,"{r}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]"#).into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_stalls_half_way_is_closed_with_1008_and_the_others_carry_on() {
    let t = TestServer::with(|socket| socket.frame_timeout = Duration::from_millis(300));
    let mut stalled = raw_upgraded(&t).await;
    let mut healthy = raw_upgraded(&t).await;
    let frame = heartbeat(1);
    stalled.write_all(&frame[..frame.len() / 2]).await.unwrap();

    healthy.write_all(&heartbeat(1)).await.unwrap();
    assert_eq!(read_server_frame(&mut healthy).await, heartbeat_ok(1));

    let (first_byte, payload) = read_server_frame(&mut stalled).await;
    assert_eq!(first_byte, 0x88, "a close frame");
    assert_eq!(payload[..2], 1008u16.to_be_bytes());
    assert_eq!(&payload[2..], b"frame not finished in time");

    healthy.write_all(&heartbeat(2)).await.unwrap();
    assert_eq!(read_server_frame(&mut healthy).await, heartbeat_ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_keep_coming_split_across_reads_are_not_taken_for_a_stalled_one() {
    let frame_timeout = Duration::from_millis(200);
    let t = TestServer::with(|socket| socket.frame_timeout = frame_timeout);
    let mut stream = raw_upgraded(&t).await;
    // Every write ends half-way through a frame, and the writes go on for several frame
    // timeouts: each frame is whole well within its own, so none is closed.
    let frames: Vec<u8> = (1..=40).flat_map(heartbeat).collect();
    let chunk = frames.len() / 40 * 3 / 2;
    let started = tokio::time::Instant::now();
    for part in frames.chunks(chunk) {
        stream.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(started.elapsed() > frame_timeout * 3, "the stream outlasted several frame timeouts");
    for r in 1..=40 {
        assert_eq!(read_server_frame(&mut stream).await, heartbeat_ok(r));
    }
}

/// Reads frames until a close frame: the replies before it, and its code and reason.
async fn frames_until_close(stream: &mut TcpStream) -> (usize, u16, String) {
    let mut replies = 0;
    loop {
        let (first_byte, payload) = read_server_frame(stream).await;
        if first_byte == 0x88 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (replies, code, String::from_utf8(payload[2..].to_vec()).unwrap());
        }
        replies += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_messages_a_second_than_allowed_close_with_1008_and_the_others_carry_on() {
    let t = TestServer::with(|socket| socket.max_messages_per_second = Some(20));
    let mut flooder = raw_upgraded(&t).await;
    let mut healthy = raw_upgraded(&t).await;
    let burst: Vec<u8> = (1..=50).flat_map(heartbeat).collect();
    flooder.write_all(&burst).await.unwrap();
    let (replies, code, reason) = frames_until_close(&mut flooder).await;
    assert_eq!((replies, code), (20, 1008), "a second's worth answered, then the close");
    assert_eq!(reason, "more than 20 messages a second");

    // A client under the rate is not touched: 10 a second for well over a second.
    for r in 1..=15 {
        healthy.write_all(&heartbeat(r)).await.unwrap();
        assert_eq!(read_server_frame(&mut healthy).await, heartbeat_ok(r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_joins_a_second_than_allowed_close_with_1008() {
    let t = TestServer::with(|socket| socket.max_joins_per_second = 3);
    let mut client = raw_upgraded(&t).await;
    let joins: Vec<u8> =
        (1..=5).flat_map(|i| masked_text(&format!(r#"["{i}","{i}","room:{i}","phx_join",{{}}]"#))).collect();
    client.write_all(&joins).await.unwrap();
    let (replies, code, reason) = frames_until_close(&mut client).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "more than 3 joins a second");
    assert!(replies <= 3, "at most the three joins allowed were answered, got {replies}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_upgrade_or_split_across_reads_are_handled() {
    let t = TestServer::start();
    let mut stream = TcpStream::connect(t.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    // The upgrade request and a first frame in one write.
    let mut first = upgrade_request("/socket/websocket?vsn=2.0.0", "").into_bytes();
    first.extend(masked_text(r#"[null,"1","phoenix","heartbeat",{}]"#));
    stream.write_all(&first).await.unwrap();

    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(common::FRAME_TIMEOUT, stream.read_exact(&mut byte)).await.expect("a head").unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
    // RFC6455§1.3: the accept key of "dGhlIHNhbXBsZSBub25jZQ==".
    assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    let heartbeat_reply = |r: &str| {
        (0x81, format!(r#"[null,"{r}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]"#).into_bytes())
    };
    assert_eq!(read_server_frame(&mut stream).await, heartbeat_reply("1"));

    // One frame written a byte at a time, then two frames in one write.
    for byte in masked_text(r#"[null,"2","phoenix","heartbeat",{}]"#) {
        stream.write_all(&[byte]).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(read_server_frame(&mut stream).await, heartbeat_reply("2"));
    let mut two = masked_text(r#"[null,"3","phoenix","heartbeat",{}]"#);
    two.extend(masked_text(r#"[null,"4","phoenix","heartbeat",{}]"#));
    stream.write_all(&two).await.unwrap();
    assert_eq!(read_server_frame(&mut stream).await, heartbeat_reply("3"));
    assert_eq!(read_server_frame(&mut stream).await, heartbeat_reply("4"));

    // An unmasked client frame is a protocol error (RFC6455§5.1): close 1002.
    let mut unmasked = masked_text(r#"[null,"5","phoenix","heartbeat",{}]"#);
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    stream.write_all(&unmasked).await.unwrap();
    let (first_byte, payload) = read_server_frame(&mut stream).await;
    assert_eq!(first_byte, 0x88);
    assert_eq!(payload[..2], 1002u16.to_be_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_no_upgrade_answers_400_and_an_unknown_vsn_403() {
    let t = TestServer::start();
    let response = t.raw_http("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "not an upgrade: {response}");
    // As Phoenix: no serializer for the version, 403.
    let response = t.raw_http(&upgrade_request("/socket/websocket?vsn=3.0.0", "")).await;
    assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"), "unknown vsn: {response}");
    assert!(t.app.connects().is_empty());
}

// ---------------------------------------------------------------------------------------
// Fairness and backpressure
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_not_read_while_its_channels_hold_too_many_messages() {
    let t = TestServer::with(|socket| socket.max_unhandled_messages = 8);
    let mut stuck = t.connect(Serializer::V2, "user_id=s").await;
    stuck.join("1", "room:stuck").await;
    stuck.heartbeat("2").await;
    for i in 0..8 {
        stuck.send(&format!(r#"["1","e{i}","room:stuck","echo",{{}}]"#)).await;
    }
    // The channel holds 8 unhandled messages: what follows is not read, so not answered.
    stuck.send(r#"[null,"3","phoenix","heartbeat",{}]"#).await;
    let answered = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Message::Text(text) = stuck.recv().await {
                if text.contains(r#""3","phoenix""#) {
                    return;
                }
            }
        }
    });
    assert!(answered.await.is_err(), "the heartbeat behind the unhandled messages was read");
    // Other connections are read as ever.
    let mut other = t.connect(Serializer::V2, "user_id=o").await;
    other.join("1", "room:stuck_not").await;
    other.heartbeat("2").await;
}

/// A healthy client joined to `room:h` and a flooder joined to `room:f`.
async fn healthy_and_flooder(t: &TestServer) -> (Client, Client) {
    let mut healthy = t.connect(Serializer::V2, "user_id=h").await;
    healthy.join("1", "room:h").await;
    let mut flooder = t.connect(Serializer::V2, "user_id=f").await;
    flooder.join("1", "room:f").await;
    (healthy, flooder)
}

/// `n` echo round trips, one after the other: each must be answered.
async fn echo_round_trips(client: &mut Client, n: usize) {
    for i in 0..n {
        client.send(&format!(r#"["1","{i}","room:h","echo",{{"i":{i}}}]"#)).await;
        client.expect(&format!(r#"["1","{i}","room:h","phx_reply",{{"response":{{"i":{i}}},"status":"ok"}}]"#)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_channels_hold_its_credit_for_an_idle_timeout_is_closed_with_1011() {
    let t = TestServer::with(|socket| {
        socket.max_unhandled_messages = 2;
        socket.timeout = Duration::from_millis(300);
    });
    let mut stuck = t.connect(Serializer::V2, "user_id=s").await;
    stuck.join("1", "room:stuck").await;
    stuck.send(r#"["1","2","room:stuck","echo",{}]"#).await;
    stuck.send(r#"["1","3","room:stuck","echo",{}]"#).await;
    // The channel answers, but never gives its credit back.
    stuck.expect(r#"["1","2","room:stuck","phx_reply",{"response":{},"status":"ok"}]"#).await;
    stuck.expect(r#"["1","3","room:stuck","phx_reply",{"response":{},"status":"ok"}]"#).await;
    assert_eq!(stuck.expect_close(1011).await, "channels stopped handling messages");
    eventually("the stuck channel leaves", || t.registry().subscriber_count("room:stuck") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_without_reading_costs_the_others_nothing_and_is_dropped() {
    let t = TestServer::start();
    let (mut healthy, mut flooder) = healthy_and_flooder(&t).await;
    let flood = tokio::spawn(async move {
        let body = "x".repeat(200);
        for i in 0u64.. {
            let frame = format!(r#"["1","{i}","room:f","echo",{{"b":"{body}"}}]"#);
            if futures_util::SinkExt::send(&mut flooder.ws, Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    echo_round_trips(&mut healthy, 200).await;
    // Its replies fill its outbox (1 MiB): a client that does not read is dropped.
    eventually("the flooder is dropped", || t.registry().subscriber_count("room:f") == 0).await;
    flood.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_and_reads_costs_the_others_nothing() {
    let t = TestServer::start();
    let (mut healthy, flooder) = healthy_and_flooder(&t).await;
    let (mut write, mut read) = futures_util::StreamExt::split(flooder.ws);
    let flood = tokio::spawn(async move {
        for i in 0u64.. {
            let frame = format!(r#"["1","{i}","room:f","echo",{{}}]"#);
            if futures_util::SinkExt::send(&mut write, Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    let replies = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut read).await {
            n += 1;
        }
        n
    });
    echo_round_trips(&mut healthy, 200).await;
    assert_eq!(t.registry().subscriber_count("room:f"), 1, "a flooder that reads is served, not dropped");
    flood.abort();
    replies.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_join_while_the_first_is_answered_gets_both_answers_then_closes_the_first() {
    let t = TestServer::start();
    for serializer in SERIALIZERS {
        let mut client = t.connect(serializer, "user_id=u1").await;
        client.send(r#"["1","1","room:slow","phx_join",{}]"#).await;
        client.send(r#"["2","2","room:slow","phx_join",{}]"#).await;
        client.heartbeat("3").await; // both joins were read
        let (conn, join) = t.app.next_deferred_join().await;
        assert_eq!(join.join_ref, Some("1".into()), "the first join is asked for first");
        t.app.answer_join(&conn, join);
        client.expect(r#"["1","1","room:slow","phx_reply",{"response":{"joined":"room:slow","user_id":"u1"},"status":"ok"}]"#).await;
        let (conn, join) = t.app.next_deferred_join().await;
        assert_eq!(join.join_ref, Some("2".into()));
        t.app.answer_join(&conn, join);
        client.expect(r#"["2","2","room:slow","phx_reply",{"response":{"joined":"room:slow","user_id":"u1"},"status":"ok"}]"#).await;
        client.expect(r#"["1","1","room:slow","phx_close",{}]"#).await;
        client.send(r#"["2","4","room:slow","echo",{}]"#).await;
        client.expect(r#"["2","4","room:slow","phx_reply",{"response":{},"status":"ok"}]"#).await;
    }
}
