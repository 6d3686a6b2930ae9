//! Subscriptions across replicas: the history first, then events appended on another
//! replica, each once; recipients see only what moved the status; a subscriber that falls
//! behind is dropped.

use std::time::Duration;

use titan_kit::ServiceError;
use titan_tracking::{
    app::{Received, Subscription},
    config::Settings,
    domain::{NewEvent, Status},
};

use crate::{World, at, delivery, owner, stranger, support};

fn scan(id: &str, number: &str, kind: Status, seconds: i64) -> (String, NewEvent) {
    (
        number.to_owned(),
        NewEvent {
            source_event_id: id.to_owned(),
            kind,
            location: format!("hub {id}"),
            coordinates: None,
            at: at(seconds),
            note: "internal".into(),
            estimated_delivery: None,
        },
    )
}

async fn next(s: &mut Subscription) -> (Status, Status, bool, String) {
    let u = tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("an update in time")
        .expect("an update");
    (u.status, u.event.kind, u.applied, u.event.note)
}

#[tokio::test]
async fn a_subscriber_on_one_replica_gets_the_history_then_events_appended_on_another() {
    let w = World::new().await;
    let n = "AC0000000000000010";
    w.deliver(&crate::shipment_created("ship-1", n, "acme"))
        .await
        .expect("created");
    let b = w.replica();
    let mut full = w
        .app
        .subscribe(&support(), n, "")
        .await
        .expect("a service subscribes");
    let mut public = w
        .app
        .subscribe(&stranger(), n, "acme")
        .await
        .expect("anyone subscribes");
    // The buyer who owns the shipment gets the recipient's view.
    let mine = w
        .app
        .subscribe(&owner(), n, "")
        .await
        .expect("the owner subscribes");
    assert!(full.full() && !public.full() && !mine.full());
    // History first.
    assert_eq!(
        next(&mut full).await,
        (
            Status::Created,
            Status::Created,
            true,
            "shipment ship-1 created".into()
        )
    );
    assert_eq!(next(&mut public).await.1, Status::Created);
    // B appends a pickup, then a scan that does not apply (PICKED_UP after IN_TRANSIT is
    // refused by the machine), then one that does.
    let received = b
        .receive("acme", &vec![scan("a1", n, Status::InTransit, 10)])
        .await
        .expect("a1");
    assert_eq!(
        received,
        Received {
            appended: 1,
            duplicates: 0
        }
    );
    b.receive("acme", &vec![scan("a2", n, Status::PickedUp, 20)])
        .await
        .expect("a2");
    b.receive("acme", &vec![scan("a3", n, Status::OutForDelivery, 30)])
        .await
        .expect("a3");
    // A driver event through the bus handler on A.
    w.deliver(&delivery("completed", "ship-1", 40))
        .await
        .expect("completed");
    assert_eq!(next(&mut full).await.0, Status::InTransit);
    assert_eq!(
        next(&mut full).await,
        (
            Status::InTransit,
            Status::PickedUp,
            false,
            "internal".into()
        )
    );
    assert_eq!(next(&mut full).await.1, Status::OutForDelivery);
    assert_eq!(next(&mut full).await.0, Status::Delivered);
    // The recipient never sees the refused scan.
    let seen: Vec<Status> = [
        next(&mut public).await,
        next(&mut public).await,
        next(&mut public).await,
    ]
    .into_iter()
    .map(|u| u.1)
    .collect();
    assert_eq!(
        seen,
        [Status::InTransit, Status::OutForDelivery, Status::Delivered]
    );
    // A replayed scan appends nothing and sends nothing; the next new event comes next.
    assert_eq!(
        b.receive("acme", &vec![scan("a1", n, Status::InTransit, 10)])
            .await
            .expect("replay"),
        Received {
            appended: 0,
            duplicates: 1
        }
    );
    b.receive("acme", &vec![scan("a4", n, Status::Returned, 50)])
        .await
        .expect("a4");
    assert_eq!(
        next(&mut full).await,
        (
            Status::Delivered,
            Status::Returned,
            false,
            "internal".into()
        )
    );
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_dropped() {
    let w = World::with(Settings {
        subscriber_buffer: 2,
        ..Settings::default()
    })
    .await;
    let n = "AC0000000000000011";
    w.deliver(&crate::shipment_created("ship-1", n, "acme"))
        .await
        .expect("created");
    let mut slow = w.app.subscribe(&support(), n, "").await.expect("subscribe");
    let id = w
        .app
        .track(&crate::lookup(n))
        .await
        .expect("record")
        .record
        .id;
    // A witness on the same hub as the slow subscriber.
    let mut witness = w.live.listen(id, 100).await.expect("witness");
    for i in 0..6 {
        w.app
            .receive(
                "acme",
                &vec![scan(&format!("s{i}"), n, Status::InTransit, i)],
            )
            .await
            .expect("scan");
    }
    // The witness has room for all six: once it has the sixth, the slow subscriber was
    // offered all six too.
    for _ in 0..6 {
        witness.next().await.expect("witness");
    }
    let mut seen = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("in time")
        {
            Ok(_) => seen += 1,
            Err(e) => break e,
        }
    };
    // The history (1) and at most the buffer (2) before the cut.
    assert!(seen <= 3, "saw {seen} updates before the cut");
    assert_eq!(err.reason(), Some("SLOW_SUBSCRIBER"));
}
