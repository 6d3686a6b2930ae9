//! A person's export and erasure (`titan_kit::privacy`): the export holds exactly their events;
//! the erasure moves them to the pseudonym with their properties cleared, so the KPIs, their
//! rollups included, are what they were; nothing of the person is left in any table; a second
//! erasure finds nothing.

use titan_analytics::{
    app::KpiReport,
    domain::{Event, Granularity, Period},
    store::privacy::PersonalEvents,
};
use titan_kit::{
    events::Envelope,
    privacy::{Erasure, PersonalData},
    testing::{mentions, privacy::subject},
};

use super::*;

/// A `flashsale.purchased` bus event of `user`, as analytics stores it, and its event id.
fn purchased(
    world: &World,
    order: &str,
    user: &str,
    minor: i64,
    currency: &str,
    when: &str,
) -> (EventRow, String) {
    let mut envelope = Envelope::new(
        "sg-1",
        "flashsale.purchased",
        1,
        &json!({"order_id": order, "product_id": "p1", "user_id": user, "quantity": 1,
                "total": {"minor_units": minor, "currency": currency}}),
    )
    .expect("envelope");
    envelope.occurred_at = at(when);
    let id = envelope.id.to_string();
    (
        EventRow::new(Event::from_envelope(&envelope), world.clock.now()),
        id,
    )
}

/// The KPIs of the seven weeks the events fall in, per day and per week (the rollups and the events).
async fn kpis(world: &World) -> Vec<KpiReport> {
    let period = Period::new(at("2026-09-21T00:00:00Z"), at("2026-11-09T00:00:00Z")).expect("p");
    let mut reports = Vec::new();
    for granularity in [Granularity::Day, Granularity::Week] {
        reports.push(world.app.kpis(period, granularity, "").await.expect("kpis"));
    }
    reports
}

#[tokio::test]
async fn an_erased_person_counts_once_under_the_pseudonym_and_is_named_nowhere() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let (a, b) = (
        format!("a-{}", uuid::Uuid::new_v4()),
        format!("b-{}", uuid::Uuid::new_v4()),
    );
    // Ann: a page view in the block before (with her e-mail in the properties), a product view
    // sent twice (a retry) that names her, and a purchase from the bus; Bob: a page view and a
    // purchase.
    let ann_events = vec![
        event(
            "a-1",
            "page_view",
            &a,
            "sa",
            "2026-09-21T08:00:00.250Z",
            json!({"page": "/home", "email": "ann@example.com"}),
        ),
        event(
            "a-2",
            "product_view",
            &a,
            "sa",
            "2026-11-03T10:00:00Z",
            json!({"product_id": "p1", "note": format!("viewed by {a}")}),
        ),
    ];
    world
        .app
        .track(&tracker(), ann_events.clone())
        .await
        .expect("track");
    world
        .app
        .track(&tracker(), vec![ann_events[1].clone()])
        .await
        .expect("retry");
    world
        .app
        .track(
            &tracker(),
            vec![event(
                "b-1",
                "page_view",
                &b,
                "sb",
                "2026-11-03T11:00:00Z",
                json!({"page": "/home"}),
            )],
        )
        .await
        .expect("track");
    let (ann_order, ann_order_id) =
        purchased(&world, "o-a", &a, 1999, "USD", "2026-11-03T10:05:00Z");
    let (bob_order, bob_order_id) =
        purchased(&world, "o-b", &b, 500, "EUR", "2026-11-04T09:00:00Z");
    world
        .events
        .submit(vec![ann_order, bob_order])
        .await
        .expect("bus events");

    // Reports read before: the daily rollup is computed and stored.
    let before = kpis(&world).await;
    assert_eq!(before[1].totals[0].kpis.unique_users, 2);
    assert_eq!(before[1].totals[0].kpis.purchasers, 2);
    assert_eq!(before[1].totals[0].kpis.events, 5);

    let p = PersonalEvents::new(world.ch.client.clone());
    let (sa, sb) = (subject(&a), subject(&b));
    let client = |id: &str, name: &str, session: &str, time: &str, props: Value, page: &str| {
        json!({"event_id": id, "name": name, "session_id": session, "time": time,
               "properties": props, "device": "", "platform": "", "country": "", "city": "",
               "cell": "sg-1", "product_id": if name == "product_view" { "p1" } else { "" },
               "order_id": "", "page": page, "revenue": 0, "currency": "", "source": "client",
               "ingested_at": "2026-11-10T00:00:00Z"})
    };
    let bus = |id: &str, order: &str, user: &str, minor: i64, currency: &str, time: &str| {
        json!({"event_id": id, "name": "flashsale.purchased", "session_id": "", "time": time,
               "properties": {"order_id": order, "product_id": "p1", "user_id": user,
                              "quantity": 1,
                              "total": {"minor_units": minor, "currency": currency}},
               "device": "", "platform": "", "country": "", "city": "", "cell": "sg-1",
               "product_id": "p1", "order_id": order, "page": "", "revenue": minor,
               "currency": currency, "source": "bus", "ingested_at": "2026-11-10T00:00:00Z"})
    };
    assert_eq!(
        p.export(&sa).await.expect("export"),
        json!({"user_id": a, "events": [
            client("a-1", "page_view", "sa", "2026-09-21T08:00:00.250Z",
                   json!({"page": "/home", "email": "ann@example.com"}), "/home"),
            client("a-2", "product_view", "sa", "2026-11-03T10:00:00Z",
                   json!({"product_id": "p1", "note": format!("viewed by {a}")}), ""),
            bus(&ann_order_id, "o-a", &a, 1999, "USD", "2026-11-03T10:05:00Z"),
        ]})
    );
    let bob = json!({"user_id": b, "events": [
        client("b-1", "page_view", "sb", "2026-11-03T11:00:00Z", json!({"page": "/home"}), "/home"),
        bus(&bob_order_id, "o-b", &b, 500, "EUR", "2026-11-04T09:00:00Z"),
    ]});
    assert_eq!(p.export(&sb).await.expect("export"), bob);

    // The search below finds Ann (and her e-mail) before her erasure.
    let tables = |found: Vec<(String, u64)>| found.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    assert_eq!(
        tables(mentions::clickhouse(&world.ch.client, &a).await),
        ["analytics_events", "analytics_user_days"]
    );
    assert_eq!(
        tables(mentions::clickhouse(&world.ch.client, "ann@example.com").await),
        ["analytics_events"]
    );

    // Two blocks of active days: 2026-09-21 and early November lie in different ones.
    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("erase"),
        Erasure::default()
            .pseudonymised("events", 3)
            .removed("active-day records", 2)
    );
    assert_eq!(mentions::clickhouse(&world.ch.client, &a).await, vec![]);
    assert_eq!(
        mentions::clickhouse(&world.ch.client, "ann@example.com").await,
        vec![]
    );
    // Kept under the pseudonym, once each, with the properties cleared.
    let kept: Vec<(String, String, String, i64)> = world
        .ch
        .client
        .query(
            "SELECT DISTINCT event_id, name, properties, revenue FROM analytics_events
             WHERE user_id = ? ORDER BY name, event_id",
        )
        .bind(&sa.pseudonym)
        .fetch_all()
        .await
        .expect("kept");
    assert_eq!(
        kept,
        vec![
            (
                ann_order_id.clone(),
                "flashsale.purchased".into(),
                "{}".into(),
                1999
            ),
            ("a-1".into(), "page_view".into(), "{}".into(), 0),
            ("a-2".into(), "product_view".into(), "{}".into(), 0),
        ]
    );
    assert_eq!(
        kpis(&world).await,
        before,
        "the KPIs count the pseudonym as Ann"
    );
    assert_eq!(p.export(&sb).await.expect("export"), bob);

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("erase again"),
        Erasure::default()
            .pseudonymised("events", 0)
            .removed("active-day records", 0)
    );
    assert_eq!(
        p.export(&sa).await.expect("export"),
        json!({"user_id": a, "events": []})
    );
    assert_eq!(kpis(&world).await, before);
}

#[tokio::test]
async fn an_erasure_cut_short_after_the_copies_finishes_when_run_again() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let a = format!("a-{}", uuid::Uuid::new_v4());
    world
        .app
        .track(
            &tracker(),
            vec![
                event(
                    "c-1",
                    "page_view",
                    &a,
                    "s",
                    "2026-11-03T10:00:00Z",
                    no_props(),
                ),
                event(
                    "c-2",
                    "page_view",
                    &a,
                    "s",
                    "2026-11-03T10:01:00Z",
                    no_props(),
                ),
            ],
        )
        .await
        .expect("track");
    let s = subject(&a);
    // A crash after the first step: one copy made, no original deleted yet.
    world
        .ch
        .client
        .query(
            "INSERT INTO analytics_events (event_id, name, user_id, session_id, time, time_ms,
                 date, properties, device, platform, country, city, cell, product_id, order_id,
                 page, revenue, currency, source, ingested_at)
             SELECT event_id, name, ? AS kept_user, session_id, time, time_ms, date,
                    '{}' AS cleared, device, platform, country, city, cell, product_id, order_id,
                    page, revenue, currency, source, ingested_at
             FROM analytics_events WHERE event_id = 'c-1'",
        )
        .bind(&s.pseudonym)
        .execute()
        .await
        .expect("copy");
    let p = PersonalEvents::new(world.ch.client.clone());
    PersonalData::erase(&p, &s).await.expect("erase");
    let rows: Vec<(String, String)> = world
        .ch
        .client
        .query("SELECT event_id, user_id FROM analytics_events ORDER BY event_id")
        .fetch_all()
        .await
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("c-1".to_owned(), s.pseudonym.clone()),
            ("c-2".to_owned(), s.pseudonym.clone()),
        ],
        "each event once, under the pseudonym"
    );
}
