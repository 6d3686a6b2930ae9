//! Opens and clicks counted once per user through the signed routes, in-app messages, and a
//! report's conversions, attributed revenue and ROI worked out by hand.

use chrono::Duration;
use titan_campaign::{
    domain::{Channel, LinkKind, LinkSigner, Linked, Model, Rule},
    store::consumer::record_purchase,
};

use crate::support::{Ev, SECRET, Setup, contact, env, events, launch, spec};

#[tokio::test]
async fn opens_and_clicks_count_once_per_user_and_forged_links_count_nothing() {
    let env = env(Setup::default()).await;
    events(
        &env.ch,
        &[
            Ev("a", "flashsale.purchased", 1, "p", 100, "FR"),
            Ev("b", "flashsale.purchased", 1, "p", 100, "FR"),
        ],
    )
    .await;
    env.contacts(&[contact("a", "", "", 1), contact("b", "", "", 1)])
        .await;
    let c = launch(
        &env,
        spec(
            Channel::Popup,
            vec![Rule::PurchasedWithin { within_days: 7 }],
        ),
    )
    .await;
    env.app.tick().await.expect("tick");
    // a asks twice: the popup each time, one delivery.
    let first = env.app.in_app("a").await.expect("in-app");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].subject, "Hello Ann");
    assert_eq!(env.app.in_app("a").await.expect("in-app"), first);
    // Someone outside the segment sees nothing.
    assert!(env.app.in_app("stranger").await.expect("in-app").is_empty());
    let click = first[0]
        .click_url
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned();
    for _ in 0..3 {
        assert_eq!(
            env.app.clicked(&click).await.expect("click").as_deref(),
            Some("https://shop.test/winter")
        );
    }
    let signer = LinkSigner::derive(SECRET);
    let link = |user: &str| Linked {
        campaign: c.id,
        occurrence: 0,
        user_id: user.into(),
        channel: Channel::Popup,
    };
    assert!(
        env.app
            .opened(&signer.sign(LinkKind::Open, &link("a")))
            .await
            .expect("open")
    );
    assert!(
        !env.app
            .opened(&signer.sign(LinkKind::Open, &link("a")))
            .await
            .expect("open")
    );
    assert!(
        env.app
            .opened(&signer.sign(LinkKind::Open, &link("b")))
            .await
            .expect("open")
    );
    // A click token is no open token, and a forged key signs nothing.
    assert!(!env.app.opened(&click).await.expect("open"));
    let forged = LinkSigner::derive(b"not the cell's secret, not at all");
    assert_eq!(
        env.app
            .clicked(&forged.sign(LinkKind::Click, &link("b")))
            .await
            .expect("click"),
        None
    );
    let report = env.app.report(c.id, None).await.expect("report");
    assert_eq!(
        (
            report.counts.sent,
            report.counts.opened,
            report.counts.clicked
        ),
        (1, 2, 1)
    );
    // One popup shown at 10.
    assert_eq!(report.cost, 10);
}

#[tokio::test]
async fn conversions_revenue_and_roi_follow_the_attribution_model() {
    let env = env(Setup::default()).await;
    events(
        &env.ch,
        &[
            Ev("a", "flashsale.purchased", 1, "p", 100, "FR"),
            Ev("b", "flashsale.purchased", 1, "p", 100, "FR"),
        ],
    )
    .await;
    env.contacts(&[contact("a", "", "", 1), contact("b", "", "", 1)])
        .await;
    let rules = || vec![Rule::PurchasedWithin { within_days: 7 }];
    // Campaign X is shown to a and b at t0; campaign Y to a at t0 + 1 h.
    let x = launch(&env, spec(Channel::Banner, rules())).await;
    env.app.tick().await.expect("tick");
    env.app.in_app("a").await.expect("in-app");
    env.app.in_app("b").await.expect("in-app");
    env.clock.advance(Duration::hours(1));
    let y = launch(&env, spec(Channel::Banner, rules())).await;
    env.app.tick().await.expect("tick");
    // a sees X again (not counted again) and Y for the first time.
    assert_eq!(env.app.in_app("a").await.expect("in-app").len(), 2);
    let t0 = crate::support::t0();
    let mut tx = env.pg.pool.begin().await.expect("tx");
    // a buys 9,000 at t0 + 2 h: touches X (t0) and Y (t0 + 1 h).
    record_purchase(&mut tx, "o-a", "a", 9_000, "USD", t0 + Duration::hours(2))
        .await
        .expect("purchase");
    // b buys 3,000 at t0 + 3 h: touched by X only.
    record_purchase(&mut tx, "o-b", "b", 3_000, "USD", t0 + Duration::hours(3))
        .await
        .expect("purchase");
    // b buys again 8 days later: outside the 7-day window.
    record_purchase(&mut tx, "o-b2", "b", 5_000, "USD", t0 + Duration::days(8))
        .await
        .expect("purchase");
    // A purchase in another currency is not this campaign's revenue.
    record_purchase(&mut tx, "o-b3", "b", 7_000, "EUR", t0 + Duration::hours(4))
        .await
        .expect("purchase");
    // The same order from a redelivered event changes nothing.
    record_purchase(&mut tx, "o-b", "b", 3_000, "USD", t0 + Duration::hours(3))
        .await
        .expect("purchase");
    tx.commit().await.expect("commit");

    // X cost 2 impressions × 10 = 20.
    // Last touch: a's order goes to Y (newest touch), b's 3,000 to X → X 3,000, 1 conversion;
    // ROI (3,000 − 20) / 20 = 149.
    let r = env
        .app
        .report(x.id, Some(Model::LastTouch))
        .await
        .expect("report");
    assert_eq!((r.converted, r.revenue, r.cost), (2, 3_000, 20));
    assert_eq!(r.roi, Some(149.0));
    // First touch: a's 9,000 and b's 3,000 both to X → 12,000; ROI (12,000 − 20) / 20 = 599.
    let r = env
        .app
        .report(x.id, Some(Model::FirstTouch))
        .await
        .expect("report");
    assert_eq!((r.converted, r.revenue), (2, 12_000));
    assert_eq!(r.roi, Some(599.0));
    // Linear: a's 9,000 split between X and Y (4,500 each) + b's 3,000 → X 7,500.
    let r = env
        .app
        .report(x.id, Some(Model::Linear))
        .await
        .expect("report");
    assert_eq!(r.revenue, 7_500);
    assert_eq!(r.roi, Some(374.0));
    // Y: one impression (10); last touch 9,000 → ROI (9,000 − 10) / 10 = 899.
    let r = env
        .app
        .report(y.id, Some(Model::LastTouch))
        .await
        .expect("report");
    assert_eq!((r.converted, r.revenue, r.cost), (1, 9_000, 10));
    assert_eq!(r.roi, Some(899.0));
    // The configured default is last touch.
    assert_eq!(
        env.app.report(y.id, None).await.expect("report").model,
        Model::LastTouch
    );
}
