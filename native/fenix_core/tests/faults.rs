//! Panic containment, with panics injected on purpose (feature `fault-injection`, see
//! `src/fault.rs`; `make test` runs this file with it): a panic in a connection's session
//! costs that connection, one in the outbound worker that turn's sends, one at a
//! presence tick that topic's diff; in each case the others, and the server, go on.

mod common;

use std::time::Duration;

use common::{eventually, Pacer, TestServer};
use fenix_core::presence::{Limits, MetaFields};
use fenix_core::protocol::{Body, Serializer};
use fenix_core::server::DiffRoute;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_session_closes_that_connection_only() {
    let t = TestServer::start();
    let mut victim = t.connect(Serializer::V2, "user_id=v").await;
    let mut healthy = t.connect(Serializer::V2, "user_id=h").await;
    victim.join("1", "room:f").await;
    healthy.join("1", "room:f").await;

    victim.send(r#"["1","2","room:f","fenix:panic",{}]"#).await;
    let (_, closed_cleanly) = victim.drain().await;
    assert!(!closed_cleanly, "the task died: no close frame, the socket just goes");
    eventually("the victim's channel is told", || t.app.closed_channels().len() == 1).await;

    // The healthy connection, and new ones, are served as before.
    healthy.heartbeat("3").await;
    let mut newcomer = t.connect(Serializer::V1, "user_id=n").await;
    newcomer.join("1", "room:f").await;
    Pacer::new().broadcast(&t.server, "room:f", "after", Body::Json(b"{}"), None).await;
    healthy.expect(r#"[null,null,"room:f","after",{}]"#).await;
    newcomer.expect(r#"[null,null,"room:f","after",{}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_outbound_worker_loses_that_turn_only() {
    let t = TestServer::start();
    let mut client = t.connect(Serializer::V2, "user_id=c").await;
    client.join("1", "room:o").await;
    eventually("a fan-out target", || t.registry().subscriber_count("room:o") == 1).await;

    let (panicking, other) = (Pacer::new(), Pacer::new());
    panicking.broadcast(&t.server, "room:o", "fenix:panic:fanout", Body::Json(b"{}"), None).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Every sender, the one whose turn was lost included, is served afterwards.
    other.broadcast(&t.server, "room:o", "from_other", Body::Json(b"{}"), None).await;
    client.expect(r#"[null,null,"room:o","from_other",{}]"#).await;
    panicking.broadcast(&t.server, "room:o", "again", Body::Json(b"{}"), None).await;
    client.expect(r#"[null,null,"room:o","again",{}]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_at_a_presence_tick_loses_that_topics_diff_only() {
    let t = TestServer::start();
    let mut client = t.connect(Serializer::V2, "user_id=p").await;
    client.join("1", "room:p").await;
    eventually("a fan-out target", || t.registry().subscriber_count("room:p") == 1).await;

    let route = DiffRoute { broadcast: true, handler: None, on_broadcast: None };
    let hub = t.server.start_presence(Duration::from_millis(20), Limits::default(), route);
    let meta = || MetaFields { json: json!({}).as_object().cloned().unwrap_or_default(), native: Default::default() };
    hub.track(1, "fenix:panic:presence", "k", meta()).expect("tracks");
    let r#ref = hub.track(1, "room:p", "ann", meta()).expect("tracks");
    client
        .expect(&format!(r#"[null,null,"room:p","presence_diff",{{"joins":{{"ann":{{"metas":[{{"phx_ref":"{}"}}]}}}},"leaves":{{}}}}]"#, r#ref.as_str()))
        .await;
    // Later ticks go on.
    let bob = hub.track(2, "room:p", "bob", meta()).expect("tracks");
    client
        .expect(&format!(r#"[null,null,"room:p","presence_diff",{{"joins":{{"bob":{{"metas":[{{"phx_ref":"{}"}}]}}}},"leaves":{{}}}}]"#, bob.as_str()))
        .await;
}
