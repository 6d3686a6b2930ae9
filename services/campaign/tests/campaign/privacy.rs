//! A person's export and erasure (`titan_kit::privacy`) on the real stores: the export holds
//! exactly the person's records; the erasure deletes the contact, the suppression and the
//! message not sent yet, keeps the sent message, the opens and clicks and the purchase under
//! the pseudonym so every campaign's counts, attribution and ROI stay, leaves no trace of the
//! person or their address in any table, leaves another person as they were, and is
//! idempotent; links in messages sent before it record nothing; a person who comes back and
//! clicks the same campaign again is merged into the pseudonym's click.

use chrono::Duration;
use titan_campaign::{
    domain::{Channel, Contact, LinkKind, LinkSigner, Linked, Model, Rule, Schedule, Transition},
    privacy::Privacy,
    store::consumer::record_purchase,
};
use titan_kit::{
    privacy::{Erasure, PersonalData},
    testing::{mentions, privacy::subject},
};

use crate::support::{Ev, SECRET, Setup, contact, env, events, key, launch, spec, t0};

fn nothing() -> Erasure {
    Erasure::default()
        .removed("contacts", 0)
        .removed("suppressions", 0)
        .removed("unsent messages", 0)
        .removed("trigger records", 0)
        .pseudonymised("messages", 0)
        .pseudonymised("opens and clicks", 0)
        .pseudonymised("purchases", 0)
}

#[tokio::test]
async fn a_person_is_exported_then_erased_and_the_campaign_counts_stay() {
    let env = env(Setup::default()).await;
    let handler = Privacy::new(env.pg.pool.clone());
    let id = || uuid::Uuid::new_v4().simple().to_string();
    let (a, b) = (format!("a-{}", id()), format!("b-{}", id()));
    let email_a = format!("{}@mail.test", id());
    events(
        &env.ch,
        &[
            Ev(&a, "flashsale.purchased", 1, "p", 100, "FR"),
            Ev(&b, "flashsale.purchased", 1, "p", 100, "FR"),
        ],
    )
    .await;
    env.contacts(&[
        contact(&a, &email_a, "", 2),
        contact(&b, "b@mail.test", "", 1),
    ])
    .await;
    let rules = || vec![Rule::PurchasedWithin { within_days: 7 }];
    // X: a daily popup both see, and A clicks and opens.
    let x = env
        .app
        .create(&key("CreateCampaign"), spec(Channel::Popup, rules()))
        .await
        .expect("create");
    env.app
        .transition(
            &key("ScheduleCampaign"),
            x.id,
            Transition::Schedule,
            Some(
                Schedule::new(
                    env.clock.now(),
                    24,
                    Some(env.clock.now() + Duration::days(7)),
                )
                .expect("schedule"),
            ),
        )
        .await
        .expect("schedule");
    env.app.tick().await.expect("tick");
    let shown = env.app.in_app(&a).await.expect("in-app");
    assert_eq!(shown.len(), 1);
    env.app.in_app(&b).await.expect("in-app");
    let click = shown[0]
        .click_url
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned();
    assert!(env.app.clicked(&click).await.expect("click").is_some());
    let signer = LinkSigner::derive(SECRET);
    let link = |user: &str| Linked {
        campaign: x.id,
        occurrence: 0,
        user_id: user.into(),
        channel: Channel::Popup,
    };
    for user in [&a, &b] {
        assert!(
            env.app
                .opened(&signer.sign(LinkKind::Open, &link(user)))
                .await
                .expect("open")
        );
    }
    assert_eq!(
        env.app
            .unsubscribe(&signer.sign(LinkKind::Unsubscribe, &link(&a)))
            .await
            .expect("unsubscribe"),
        Some(Channel::Popup)
    );
    // Y: a banner an hour later; B sees it, A's is still waiting (PENDING).
    env.clock.advance(Duration::hours(1));
    let y = launch(&env, spec(Channel::Banner, rules())).await;
    env.app.tick().await.expect("tick");
    assert_eq!(env.app.in_app(&b).await.expect("in-app").len(), 2);
    let (order_a, order_b) = (format!("o-{}", id()), format!("o-{}", id()));
    let mut tx = env.pg.pool.begin().await.expect("tx");
    record_purchase(
        &mut tx,
        &order_a,
        &a,
        9_000,
        "USD",
        t0() + Duration::hours(2),
    )
    .await
    .expect("purchase");
    record_purchase(
        &mut tx,
        &order_b,
        &b,
        3_000,
        "USD",
        t0() + Duration::hours(3),
    )
    .await
    .expect("purchase");
    tx.commit().await.expect("commit");

    // The export: exactly A's records.
    let records = handler.export_of(&a).await.expect("export");
    let contact_a = records.contact.clone().expect("contact");
    assert_eq!(
        (
            contact_a.email.as_str(),
            contact_a.push_token,
            contact_a.level,
            contact_a.first_name.as_str()
        ),
        (email_a.as_str(), format!("push-{a}"), 2, "Ann")
    );
    let deliveries: Vec<(
        uuid::Uuid,
        &str,
        &str,
        Option<chrono::DateTime<chrono::Utc>>,
    )> = records
        .deliveries
        .iter()
        .map(|d| {
            (
                d.campaign_id,
                d.channel.as_str(),
                d.status.as_str(),
                d.sent_at,
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        vec![
            (x.id.uuid(), "POPUP", "SENT", Some(t0())),
            (y.id.uuid(), "BANNER", "PENDING", None),
        ]
    );
    let suppressions: Vec<(&str, &str)> = records
        .suppressions
        .iter()
        .map(|s| (s.channel.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(suppressions, vec![("POPUP", "unsubscribe")]);
    let mut engagements: Vec<(uuid::Uuid, &str)> = records
        .engagements
        .iter()
        .map(|e| (e.campaign_id, e.kind.as_str()))
        .collect();
    engagements.sort();
    assert_eq!(
        engagements,
        vec![(x.id.uuid(), "click"), (x.id.uuid(), "open")]
    );
    let purchases: Vec<(&str, i64, &str)> = records
        .purchases
        .iter()
        .map(|p| (p.order_id.as_str(), p.amount, p.currency.as_str()))
        .collect();
    assert_eq!(purchases, vec![(order_a.as_str(), 9_000, "USD")]);
    assert!(records.triggers.is_empty());
    let document = handler.export(&subject(&a)).await.expect("export");
    assert_eq!(document, serde_json::to_value(&records).expect("json"));
    let text = document.to_string();
    assert!(!text.contains(&b) && !text.contains(&order_b), "{text}");

    let b_before = handler.export_of(&b).await.expect("export b");
    let reports = async || {
        let mut out = Vec::new();
        for c in [x.id, y.id] {
            out.push(
                env.app
                    .report(c, Some(Model::LastTouch))
                    .await
                    .expect("report"),
            );
        }
        out
    };
    let kept = reports().await;
    assert_eq!(
        (
            kept[0].counts.sent,
            kept[0].counts.opened,
            kept[0].counts.clicked
        ),
        (2, 2, 1)
    );
    // Last touch: X earns A's 9,000 (A was touched by X only); B's 3,000 goes to Y, B's
    // newest touch.
    assert_eq!((kept[0].converted, kept[0].revenue), (2, 9_000));
    assert_eq!((kept[1].converted, kept[1].revenue), (1, 3_000));

    // The searches that must come back empty find A before the erasure.
    assert_eq!(
        mentions::postgres_in(&env.pg.pool, "campaign", &a).await,
        [
            ("campaign_contacts", 1),
            ("campaign_deliveries", 2),
            ("campaign_engagements", 2),
            ("campaign_purchases", 1),
            ("campaign_suppressions", 1)
        ]
        .map(|(t, n)| (t.to_owned(), n))
    );

    // The erasure.
    let s = subject(&a);
    assert_eq!(
        handler.erase(&s).await.expect("erase"),
        Erasure::default()
            .removed("contacts", 1)
            .removed("suppressions", 1)
            .removed("unsent messages", 1)
            .removed("trigger records", 0)
            .pseudonymised("messages", 1)
            .pseudonymised("opens and clicks", 2)
            .pseudonymised("purchases", 1)
    );
    for needle in [&a, &email_a] {
        assert_eq!(
            mentions::postgres_in(&env.pg.pool, "campaign", needle).await,
            vec![],
            "{needle}"
        );
    }
    assert_eq!(reports().await, kept, "counts, attribution and ROI stay");
    assert_eq!(handler.export_of(&b).await.expect("export b"), b_before);
    assert!(env.app.in_app(&a).await.expect("in-app").is_empty());
    assert_eq!(
        handler.export_of(&a).await.expect("export"),
        titan_campaign::store::privacy::Records {
            user_id: a.clone(),
            contact: None,
            deliveries: Vec::new(),
            suppressions: Vec::new(),
            engagements: Vec::new(),
            purchases: Vec::new(),
            triggers: Vec::new(),
        }
    );
    assert_eq!(handler.erase(&s).await.expect("erase again"), nothing());

    // Links in messages sent before the erasure still verify (they are not stored; they carry
    // the user id) but their message is the pseudonym's now: they record nothing. A click
    // still takes the browser to the shop.
    let open = signer.sign(LinkKind::Open, &link(&a));
    let unsubscribe = signer.sign(LinkKind::Unsubscribe, &link(&a));
    assert_eq!(
        env.app.clicked(&click).await.expect("click").as_deref(),
        Some("https://shop.test/winter")
    );
    assert!(!env.app.opened(&open).await.expect("open"));
    assert_eq!(
        env.app
            .unsubscribe(&unsubscribe)
            .await
            .expect("unsubscribe"),
        Some(Channel::Popup)
    );
    assert_eq!(
        mentions::postgres_in(&env.pg.pool, "campaign", &a).await,
        vec![]
    );
    assert_eq!(reports().await, kept);

    // A comes back: a new contact, X's next day shown and clicked. The click is the one the
    // pseudonym already has for X (once per campaign and person): the next erasure merges it.
    env.contacts(&[
        Contact::new(&a, "again@mail.test", "", "", "", 1, "Ann", "FR").expect("contact"),
    ])
    .await;
    env.clock.advance(Duration::hours(23));
    env.app.tick().await.expect("tick");
    let shown = env.app.in_app(&a).await.expect("in-app");
    assert_eq!(shown.len(), 1);
    let again = shown[0]
        .click_url
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned();
    assert!(env.app.clicked(&again).await.expect("click").is_some());
    assert_eq!(
        mentions::postgres_in(&env.pg.pool, "campaign", &a).await,
        [
            ("campaign_contacts", 1),
            ("campaign_deliveries", 1),
            ("campaign_engagements", 1)
        ]
        .map(|(t, n)| (t.to_owned(), n))
    );
    assert_eq!(
        handler.erase(&s).await.expect("erase the return"),
        nothing()
            .removed("contacts", 1)
            .pseudonymised("messages", 1)
            .pseudonymised("opens and clicks", 1)
    );
    assert_eq!(
        mentions::postgres_in(&env.pg.pool, "campaign", &a).await,
        vec![]
    );
    let after = env
        .app
        .report(x.id, Some(Model::LastTouch))
        .await
        .expect("report");
    // Both days' popups to A and B's first day: three shown; A's click counted once.
    assert_eq!(
        (after.counts.sent, after.counts.opened, after.counts.clicked),
        (3, 2, 1)
    );
    assert_eq!(handler.erase(&s).await.expect("erase again"), nothing());
}
