//! Event triggers from the bus, through the consumer's handler in a PostgreSQL transaction:
//! a thank-you after each purchase, sent once however often its event arrives; an abandoned
//! cart 2 hours after `cart.updated` unless a purchase cancels it, under a frequency cap and
//! quiet hours in the user's zone.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use titan_campaign::{
    domain::{Caps, Channel, NewCampaign, QuietHours, Rule, Status, Trigger},
    store::consumer::EventHandler,
};
use titan_kit::events::{Envelope, Handler};

use crate::support::{Env, Setup, contact, env, launch, spec, statuses, t0};

fn triggered(event: &str, delay_hours: u32, cancel: &str) -> NewCampaign {
    // The segment given here is replaced: a triggered campaign's audience is its events.
    spec(
        Channel::Email,
        vec![Rule::PurchasedWithin { within_days: 1 }],
    )
    .triggered(Trigger::new(event, delay_hours, cancel).expect("trigger"))
}

fn event(kind: &str, user: &str, at: DateTime<Utc>) -> Envelope {
    let mut e = Envelope::new(
        "test",
        kind,
        1,
        &serde_json::json!({
            "order_id": format!("o-{}", uuid::Uuid::new_v4()), "user_id": user,
            "total": {"minor_units": 2_500, "currency": "USD"},
        }),
    )
    .expect("envelope");
    e.occurred_at = at;
    e
}

/// What the bus consumer does with one delivered event.
async fn deliver(env: &Env, e: &Envelope) {
    let mut tx = env.pg.pool.begin().await.expect("begin");
    EventHandler.handle(&mut tx, e).await.expect("handled");
    tx.commit().await.expect("commit");
}

fn recipients(env: &Env) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in env.smtp.as_ref().expect("smtp").messages() {
        *out.entry(m.headers["to"].clone()).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn a_purchase_triggers_one_thank_you_per_event_however_often_it_arrives() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    for u in ["u1", "u2"] {
        env.contacts(&[contact(u, &format!("{u}@shop.test"), "", 1)])
            .await;
    }
    let c = launch(&env, triggered("flashsale.purchased", 0, "")).await;
    // Before the campaign starts listening (it is SCHEDULED until the sender's turn) an event
    // starts nothing, and a user without a contact never gets anything.
    deliver(&env, &event("flashsale.purchased", "u2", t0())).await;
    let tick = env.app.tick().await.expect("tick");
    assert_eq!((tick.snapshots, tick.sent, tick.completed), (1, 0, 0));
    assert_eq!(
        env.app.get(c.id).await.expect("campaign").status,
        Status::Running
    );

    let first = event("flashsale.purchased", "u1", t0());
    deliver(&env, &first).await;
    deliver(&env, &first).await; // redelivered: the same event id
    deliver(&env, &event("flashsale.purchased", "nobody", t0())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 1);
    deliver(&env, &first).await; // again after it was sent
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    // Another purchase is another event: another thank-you.
    deliver(&env, &event("flashsale.purchased", "u1", t0())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 1);

    assert_eq!(
        recipients(&env),
        HashMap::from([("u1@shop.test".to_owned(), 2)])
    );
    assert_eq!(
        statuses(&env, c.id).await,
        HashMap::from([("SENT".into(), 2)])
    );
    // A triggered campaign without an end keeps listening.
    assert_eq!(
        env.app.get(c.id).await.expect("campaign").status,
        Status::Running
    );
    // The purchases were recorded for attribution too, each order once.
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM campaign_purchases")
        .fetch_one(&env.pg.pool)
        .await
        .expect("count");
    assert_eq!(orders, 4);
}

#[tokio::test]
async fn an_abandoned_cart_is_sent_after_the_delay_unless_a_purchase_cancels_it() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    for (u, tz) in [("u1", ""), ("u2", ""), ("u3", "Asia/Tokyo")] {
        env.contacts(&[contact(u, &format!("{u}@shop.test"), tz, 1)])
            .await;
    }
    let mut cart = triggered("cart.updated", 2, "flashsale.purchased");
    cart.caps = Caps::new(1, 24).expect("caps");
    cart.quiet_hours = QuietHours::new(22, 8).expect("quiet hours");
    let c = launch(&env, cart).await;
    assert_eq!(env.app.tick().await.expect("tick").snapshots, 1);

    // t0 is 12:00 UTC. u1 and u3 leave a cart at t0; u1 comes back at t0+30m (a second
    // event, due later); u2 leaves one at t0 and buys at t0+1h, which cancels it.
    deliver(&env, &event("cart.updated", "u1", t0())).await;
    deliver(&env, &event("cart.updated", "u2", t0())).await;
    deliver(&env, &event("cart.updated", "u3", t0())).await;
    deliver(
        &env,
        &event("cart.updated", "u1", t0() + Duration::minutes(30)),
    )
    .await;
    env.clock.advance(Duration::hours(1));
    deliver(
        &env,
        &event("flashsale.purchased", "u2", t0() + Duration::hours(1)),
    )
    .await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);

    // t0+2h = 14:00 UTC: u1's first is due and sent; u3's is due at 23:00 in Tokyo (quiet
    // until 08:00 there, 23:00 UTC) and waits.
    env.clock.advance(Duration::hours(1));
    assert_eq!(env.app.tick().await.expect("tick").sent, 1);
    assert_eq!(
        statuses(&env, c.id).await,
        HashMap::from([
            ("SENT".into(), 1),
            ("CANCELLED".into(), 1),
            ("PENDING".into(), 2),
        ])
    );
    // t0+2h30: u1's second is due, over the cap of one message a day.
    env.clock.advance(Duration::minutes(30));
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    // 22:59 UTC is 07:59 in Tokyo: still quiet. 23:00 UTC: sent.
    env.clock
        .set(t0() + Duration::hours(10) + Duration::minutes(59));
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    env.clock.set(t0() + Duration::hours(11));
    assert_eq!(env.app.tick().await.expect("tick").sent, 1);

    assert_eq!(
        statuses(&env, c.id).await,
        HashMap::from([
            ("SENT".into(), 2),
            ("CANCELLED".into(), 1),
            ("CAPPED".into(), 1),
        ])
    );
    assert_eq!(
        recipients(&env),
        HashMap::from([
            ("u1@shop.test".to_owned(), 1),
            ("u3@shop.test".to_owned(), 1),
        ])
    );
    // A purchase after the message was sent cancels nothing.
    deliver(
        &env,
        &event("flashsale.purchased", "u1", t0() + Duration::hours(11)),
    )
    .await;
    assert_eq!(statuses(&env, c.id).await["SENT"], 2);
}
