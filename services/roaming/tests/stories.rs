//! The end-to-end stories of "the mesh runs", over real sockets, on the
//! embedded mesh (`roaming up` in one process).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use support::{TestMesh, stories};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roaming_story_from_reservation_to_retrieval_at_another_booth() {
    let m = TestMesh::start().await;
    stories::roaming_story_from_reservation_to_retrieval_at_another_booth(&m.addrs(), true).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_before_hand_over_refunds_and_frees_the_resource_and_after_hand_over_is_refused() {
    let m = TestMesh::start().await;
    stories::cancel_before_hand_over_refunds_and_frees_the_resource_and_after_hand_over_is_refused(
        &m.addrs(),
    )
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parking_story_enter_exit_and_refusals() {
    let m = TestMesh::start().await;
    stories::parking_story_enter_exit_and_refusals(&m.addrs()).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_invalid_argument_with_every_field_violation() {
    let m = TestMesh::start().await;
    stories::bad_input_gets_invalid_argument_with_every_field_violation(&m.addrs()).await;
    m.stop().await;
}
