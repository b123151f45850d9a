//! One decision per reservation (DOMAIN.md, invariant 6) in `roaming up`: the
//! customer's cancel and the booth's hand-over (or the gate's entry) fired at
//! the same moment never both succeed. The same races run against five
//! processes on PostgreSQL and NATS in `distributed.rs`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_hand_over_at_once_exactly_one_wins() {
    let m = TestMesh::start().await;
    let tally = stories::cancel_races_hand_over(&m.addrs(), 30, "up").await;
    eprintln!("roaming up: {tally:?}");
    assert_eq!(tally.cancel_won + tally.use_won, 30);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_enter_at_once_never_both_succeed() {
    let m = TestMesh::start().await;
    stories::cancel_races_enter(&m.addrs(), 10, "up").await;
    m.stop().await;
}
