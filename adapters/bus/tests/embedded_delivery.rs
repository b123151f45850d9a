//! The same delivery guarantees on the embedded bus, where they apply (there is
//! no broker to kill; a "stopped consumer" is a subscriber that is not running).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use adapters_bus::embedded::EmbeddedBus;
use adapters_store::{Relay, RelayConfig};
use domain_kernel::EventPublisher;
use support::{Consumer, Producer};
use tokio::sync::watch;

const SUBJECT: &str = "roaming.rental.accepted";
const WAIT: Duration = Duration::from_mins(1);

fn relay(producer: &Producer, bus: &EmbeddedBus) -> Relay<EmbeddedBus> {
    let config = RelayConfig {
        poll: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..RelayConfig::default()
    };
    Relay::new(producer.db.clone(), bus.clone(), config)
}

async fn until_stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_subscriber_gets_all_thousand_events_once_when_it_runs_again() {
    let producer = Producer::new().await;
    let consumer = Consumer::new().await;
    let bus = EmbeddedBus::default();
    bus.subscribe("view", "roaming.rental.", consumer.handler("v"));
    bus.set_running("view", false);
    let relay = relay(&producer, &bus);

    producer.commit(1000, 50, SUBJECT).await;
    assert!(
        relay.step().await.is_err(),
        "the bus refuses events a stopped subscriber wants"
    );
    assert_eq!(consumer.counts().await, (0, 0));
    assert_eq!(
        producer.unsent().await,
        1000,
        "not marked sent while a subscriber is stopped"
    );

    // The relay keeps trying; the subscriber runs again.
    let (stop, rx) = watch::channel(false);
    tokio::spawn(relay.run(until_stopped(rx)));
    bus.set_running("view", true);
    consumer.wait_for(1000, WAIT).await;
    assert_eq!(consumer.counts().await, (1000, 1000));
    let deadline = std::time::Instant::now() + WAIT;
    while producer.unsent().await > 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_marked_sent_only_after_every_subscriber_committed() {
    let producer = Producer::new().await;
    let (a, b) = (Consumer::new().await, Consumer::new().await);
    let bus = EmbeddedBus::default();
    bus.subscribe("rental", "roaming.reservation.", a.handler("a"));
    bus.subscribe("view", "roaming.", b.handler("b"));
    producer
        .commit(10, 10, "roaming.reservation.reserved")
        .await;
    relay(&producer, &bus).drain().await.unwrap();
    assert_eq!((a.counts().await, b.counts().await), ((10, 10), (10, 10)));
    assert_eq!(producer.unsent().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_publish_is_repaired_and_a_redelivery_has_no_second_effect() {
    let producer = Producer::new().await;
    let consumer = Consumer::new().await;
    let bus = EmbeddedBus::default();
    bus.subscribe("view", "roaming.", consumer.handler("v"));
    // Committed while no relay ran.
    producer.commit(100, 10, SUBJECT).await;
    assert_eq!(consumer.counts().await, (0, 0));
    // Delivered, but the relay died before marking them sent: they go out again.
    let pending = adapters_store::outbox::unsent(producer.db.writer(), 1000)
        .await
        .unwrap();
    let events: Vec<_> = pending.iter().take(40).map(|p| p.event.clone()).collect();
    bus.publish(&events).await.unwrap();
    assert_eq!(consumer.counts().await, (40, 40));
    // The relay restarts.
    assert_eq!(relay(&producer, &bus).drain().await.unwrap(), 100);
    assert_eq!(
        consumer.counts().await,
        (100, 100),
        "all arrived, none applied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_after_max_deliver_and_the_rest_flow() {
    let producer = Producer::new().await;
    let consumer = Consumer::new().await;
    let bus = EmbeddedBus::new(3, Duration::from_millis(1));
    bus.subscribe("view", "roaming.", consumer.handler("v"));
    let ids = producer.commit(3, 3, SUBJECT).await;
    consumer.poison.lock().unwrap().push(ids[1].to_string());
    relay(&producer, &bus).drain().await.unwrap();
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].durable.as_str(),
            dead[0].event.event_id,
            dead[0].error.as_str()
        ),
        ("view", ids[1], "poison")
    );
    assert_eq!(consumer.counts().await, (2, 2));
    assert_eq!(
        consumer.calls.load(std::sync::atomic::Ordering::Relaxed),
        5,
        "1 + 3 attempts + 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_outage_is_retried_and_dead_letters_nothing() {
    let producer = Producer::new().await;
    let consumer = Consumer::new().await;
    let bus = EmbeddedBus::new(3, Duration::from_millis(1));
    bus.subscribe("view", "roaming.", consumer.handler("v"));
    consumer
        .outage
        .store(8, std::sync::atomic::Ordering::Relaxed);
    producer.commit(3, 3, SUBJECT).await;
    relay(&producer, &bus).drain().await.unwrap();
    assert_eq!(consumer.counts().await, (3, 3));
    assert!(bus.dead_letters().is_empty(), "an outage is not poison");
}

/// As on JetStream (`nats_delivery.rs`): one dead letter per subscriber and
/// event, also when the relay delivers the event again; a replay reaches the
/// one subscriber it names; one that fails again is dead-lettered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_poison_for_two_subscribers_is_two_dead_letters_each_replayed_to_its_subscriber_alone()
 {
    use adapters_bus::dlq::Selection;
    use std::sync::atomic::Ordering::Relaxed;

    let producer = Producer::new().await;
    let (rental, view) = (Consumer::new().await, Consumer::new().await);
    let bus = EmbeddedBus::new(3, Duration::from_millis(1));
    bus.subscribe("rental", "roaming.rental.", rental.handler("r"));
    bus.subscribe("view", "roaming.", view.handler("v"));
    let ids = producer.commit(3, 3, SUBJECT).await;
    let poison = ids[1].to_string();
    for consumer in [&rental, &view] {
        consumer.poison.lock().unwrap().push(poison.clone());
    }
    relay(&producer, &bus).drain().await.unwrap();
    // The relay sends the poison event again (its "sent" mark was lost).
    let pending = adapters_store::outbox::unsent(producer.db.writer(), 1000)
        .await
        .unwrap();
    assert!(pending.is_empty());
    let events = bus.dead_letters();
    bus.publish(&[events[0].event.clone()]).await.unwrap();
    let mut dead: Vec<_> = bus
        .dead_letters()
        .into_iter()
        .map(|d| (d.durable, d.event.event_id))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [("rental".to_owned(), ids[1]), ("view".to_owned(), ids[1])],
        "one per subscriber, however often it came"
    );

    rental.poison.lock().unwrap().clear();
    let view_calls = view.calls.load(Relaxed);
    assert_eq!(
        bus.replay(&Selection::Consumer("rental".into()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(rental.counts().await, (3, 3));
    assert_eq!(view.calls.load(Relaxed), view_calls, "view never saw it");
    assert_eq!(bus.dead_letters().len(), 1);

    // Still poison for view: replayed, and dead-lettered again.
    assert_eq!(bus.replay(&Selection::All).await.unwrap(), 1);
    let left = bus.dead_letters();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].durable, "view");
    assert!(view.calls.load(Relaxed) >= view_calls + 3);

    view.poison.lock().unwrap().clear();
    assert_eq!(
        bus.replay(&Selection::Event(poison.clone())).await.unwrap(),
        1
    );
    assert!(bus.dead_letters().is_empty());
    assert_eq!(view.counts().await, (3, 3));
    assert_eq!(rental.counts().await, (3, 3));
}
