//! A person's export and erasure (`titan_kit::privacy`) on the real stores: the export holds
//! exactly the shopper's records; the erasure keeps redemptions and use counts under the
//! pseudonym (merging a count the pseudonym already has), deletes the validation budget,
//! leaves no trace of the shopper's id in any table or key, leaves another shopper and every
//! coupon's totals as they were, and is idempotent.

use serde_json::{Value, json};
use sqlx::PgPool;
use titan_coupon::{
    app::Redemption,
    domain::CouponKind,
    privacy::Privacy,
    store::{pg::PgCoupons, redis::RedisCoupons},
};
use titan_kit::{
    ServiceError,
    auth::Caller,
    privacy::{Erasure, PersonalData},
    ratelimit::RateLimit,
    testing::{TestRedis, caller, mentions, privacy::subject},
};

use crate::{App, World, checkout, plain_cart, spec, uuid};

/// Every coupon's totals: (code, uses, sum of per-shopper uses, applied, reversed, distinct
/// shoppers, discount given).
async fn totals(pool: &PgPool) -> Vec<(String, i32, i64, i64, i64, i64, i64)> {
    sqlx::query_as(
        "SELECT c.code, c.uses,
                (SELECT COALESCE(sum(uses), 0)::BIGINT FROM coupon_user_uses u WHERE u.code = c.code),
                (SELECT count(*) FROM coupon_redemptions r WHERE r.code = c.code AND status = 'applied'),
                (SELECT count(*) FROM coupon_redemptions r WHERE r.code = c.code AND status = 'reversed'),
                (SELECT count(DISTINCT user_id) FROM coupon_redemptions r WHERE r.code = c.code AND status = 'applied'),
                (SELECT COALESCE(sum(discount_minor), 0)::BIGINT FROM coupon_redemptions r WHERE r.code = c.code AND status = 'applied')
         FROM coupon_coupons c ORDER BY c.code",
    )
    .fetch_all(pool)
    .await
    .expect("totals")
}

async fn redeem(w: &World, shopper: &Caller, code: &str, order: &str) -> Redemption {
    let mut done = w
        .app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper.user_id,
            &[code.into()],
            &plain_cart(),
            order,
        )
        .await
        .expect("redeem");
    assert_eq!(done.len(), 1);
    done.remove(0)
}

/// (id, code, order, discount, reversed) of each redemption of an export, by id.
fn redemptions(doc: &Value) -> Vec<(String, String, String, i64, bool)> {
    let mut out: Vec<_> = doc["redemptions"]
        .as_array()
        .expect("redemptions")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["code"].as_str().unwrap_or_default().to_owned(),
                r["order_id"].as_str().unwrap_or_default().to_owned(),
                r["discount"]["minor_units"].as_i64().unwrap_or(-1),
                r["reversed"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn row(r: &Redemption, reversed: bool) -> (String, String, String, i64, bool) {
    (
        r.id.to_string(),
        r.code.to_string(),
        r.order_id.clone(),
        r.discount.minor_units,
        reversed,
    )
}

fn nothing() -> Erasure {
    Erasure::default()
        .pseudonymised("redemptions", 0)
        .pseudonymised("usage counts", 0)
        .pseudonymised("cached redemptions", 0)
        .pseudonymised("cached usage counts", 0)
        .removed("validation budgets", 0)
}

/// Asserts that no table of the service and no key under the world's prefix names `user`.
async fn nowhere(w: &World, user: &str) {
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "coupon_", user).await,
        vec![]
    );
    assert_eq!(mentions::redis(&w.redis, user).await, Vec::<String>::new());
}

/// Both tests' cast: an app whose validation budgets last minutes (still there to erase), the
/// handler on the world's stores, shoppers A and B; coupons TEN and ONCE (a single use) made.
struct Scene {
    limited: std::sync::Arc<App>,
    handler: Privacy,
    a: Caller,
    b: Caller,
}

async fn scene(w: &World) -> Scene {
    let limited = w.limited(RateLimit {
        burst: 1_000,
        interval: std::time::Duration::from_secs(60),
    });
    let handler = Privacy::new(
        PgCoupons::new(w.db.pool.clone()),
        RedisCoupons::new(
            w.redis.clone(),
            titan_coupon::config::Settings::default().cache_ttl_seconds,
        ),
    );
    w.create(spec("TEN", CouponKind::FixedAmount, 1_000)).await;
    let mut once = spec("ONCE", CouponKind::FixedAmount, 700);
    once.total_limit = 1;
    w.create(once).await;
    Scene {
        limited,
        handler,
        a: caller(&format!("shopper-{}", uuid()), &[]),
        b: caller(&format!("shopper-{}", uuid()), &[]),
    }
}

/// Redis undercounts ONCE, so it lets `shopper` take a use the record then refuses: the use is
/// given back, leaving their count of ONCE at 0 in Redis with nothing of them in the record.
async fn given_back(w: &World, shopper: &Caller) {
    let mut conn = w.redis.conn.clone();
    let () = redis::cmd("SET")
        .arg(w.redis.key("{coupon:ONCE}:uses"))
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("undercount");
    let e = w
        .app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper.user_id,
            &["ONCE".into()],
            &plain_cart(),
            &uuid(),
        )
        .await
        .expect_err("the record refuses");
    assert_eq!(e.reason(), Some("COUPON_DEPLETED"));
}

#[tokio::test]
async fn a_shopper_is_exported_then_erased_and_the_totals_stay() {
    let w = World::new().await;
    let Scene {
        limited,
        handler,
        a,
        b,
    } = scene(&w).await;
    let mut pct = spec("PCT", CouponKind::Percentage, 1_500);
    pct.per_user_limit = 2;
    w.create(pct).await;

    // A: TEN and PCT on two orders, TEN on a third order that is cancelled; a validation.
    // B: TEN, and the single use of ONCE; a validation.
    let a1 = redeem(&w, &a, "TEN", &uuid()).await;
    let a2 = redeem(&w, &a, "PCT", &uuid()).await;
    let a3 = redeem(&w, &a, "TEN", &uuid()).await;
    w.app
        .reverse(&checkout(), &uuid(), &a3.order_id)
        .await
        .expect("reverse");
    limited
        .validate(&a, "PCT", &plain_cart())
        .await
        .expect("validate");
    let b1 = redeem(&w, &b, "TEN", &uuid()).await;
    redeem(&w, &b, "ONCE", &uuid()).await;
    limited
        .validate(&b, "TEN", &plain_cart())
        .await
        .expect("validate");
    given_back(&w, &a).await;

    let totals_before = totals(&w.db.pool).await;
    let subject_a = subject(&a.user_id);
    let subject_b = subject(&b.user_id);
    let b_before = handler.export(&subject_b).await.expect("export b");

    // The export: exactly A's records.
    let doc = handler.export(&subject_a).await.expect("export");
    let mut expected = vec![row(&a1, false), row(&a2, false), row(&a3, true)];
    expected.sort();
    assert_eq!(redemptions(&doc), expected);
    assert_eq!(
        (a1.discount.minor_units, a2.discount.minor_units),
        (1_000, 1_500)
    );
    assert_eq!(doc["uses"], json!({"PCT": 1, "TEN": 1}));
    assert_eq!(doc["budgets"], json!(["coupon:validate"]));
    let text = doc.to_string();
    assert!(
        !text.contains(&b.user_id) && !text.contains(&b1.order_id),
        "nothing of B: {text}"
    );

    // The searches that must come back empty find A before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "coupon_", &a.user_id).await,
        [
            ("coupon_redemptions".to_owned(), 3),
            ("coupon_user_uses".to_owned(), 2)
        ]
    );
    assert!(!mentions::redis(&w.redis, &a.user_id).await.is_empty());

    // The erasure.
    let erasure = handler.erase(&subject_a).await.expect("erase");
    assert_eq!(
        erasure,
        Erasure::default()
            .pseudonymised("redemptions", 3)
            .pseudonymised("usage counts", 2)
            .pseudonymised("cached redemptions", 3)
            .pseudonymised("cached usage counts", 3)
            .removed("validation budgets", 1)
    );
    nowhere(&w, &a.user_id).await;
    assert_eq!(
        totals(&w.db.pool).await,
        totals_before,
        "every coupon's totals stay"
    );
    let usage = w.app.usage("TEN").await.expect("usage");
    assert_eq!(
        (usage.redemptions, usage.reversals, usage.unique_users),
        (2, 1, 2)
    );
    // Redis agrees with the record, but for the undercount of ONCE the test made.
    let drifts = w.app.reconcile().await.expect("reconcile");
    assert_eq!(
        drifts
            .iter()
            .map(|d| d.code.to_string())
            .collect::<Vec<_>>(),
        ["ONCE"]
    );
    assert!(w.app.reconcile().await.expect("again").is_empty());
    assert_eq!(
        handler.export(&subject_b).await.expect("export b"),
        b_before
    );
    assert_eq!(
        handler.export(&subject_a).await.expect("export"),
        json!({"redemptions": [], "uses": {}, "budgets": []})
    );

    // Again: nothing left to do.
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase again"),
        nothing()
    );

    // A redemption of A recorded after the erasure (checkout was late) is erased in turn: its
    // use count joins the pseudonym's count of the same coupon.
    let a5 = redeem(&w, &a, "TEN", &uuid()).await;
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase the late one"),
        Erasure::default()
            .pseudonymised("redemptions", 1)
            .pseudonymised("usage counts", 1)
            .pseudonymised("cached redemptions", 1)
            .pseudonymised("cached usage counts", 1)
            .removed("validation budgets", 0)
    );
    let counts: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT code, user_id, uses FROM coupon_user_uses ORDER BY code, user_id")
            .fetch_all(&w.db.pool)
            .await
            .expect("counts");
    let mut counts = counts;
    counts.sort();
    let mut expected = vec![
        ("ONCE".to_owned(), b.user_id.clone(), 1),
        ("PCT".to_owned(), subject_a.pseudonym.clone(), 1),
        ("TEN".to_owned(), b.user_id.clone(), 1),
        ("TEN".to_owned(), subject_a.pseudonym.clone(), 2),
    ];
    expected.sort();
    assert_eq!(counts, expected);
    nowhere(&w, &a.user_id).await;
    assert!(w.app.reconcile().await.expect("reconcile").is_empty());

    // The kept records still work: cancelling an erased shopper's order gives the use back
    // from the pseudonym's count.
    let reversed = w
        .app
        .reverse(&checkout(), &uuid(), &a5.order_id)
        .await
        .expect("reverse");
    assert_eq!(
        reversed
            .iter()
            .map(|r| r.user_id.as_str())
            .collect::<Vec<_>>(),
        [subject_a.pseudonym.as_str()]
    );
    let ten: i32 =
        sqlx::query_scalar("SELECT uses FROM coupon_user_uses WHERE code = 'TEN' AND user_id = $1")
            .bind(&subject_a.pseudonym)
            .fetch_one(&w.db.pool)
            .await
            .expect("count");
    assert_eq!(ten, 1);
    assert!(w.app.reconcile().await.expect("reconcile").is_empty());
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase once more"),
        nothing()
    );
    assert_eq!(
        handler.export(&subject_b).await.expect("export b"),
        b_before
    );
}

/// The same erasure on a Redis Cluster: the count a given-back use left is found on whichever
/// master holds its coupon.
#[tokio::test]
async fn a_shopper_is_erased_from_a_redis_cluster() {
    let w = World::with_redis(TestRedis::cluster().await.handle).await;
    let Scene {
        limited,
        handler,
        a,
        b,
    } = scene(&w).await;
    let a1 = redeem(&w, &a, "TEN", &uuid()).await;
    limited
        .validate(&a, "TEN", &plain_cart())
        .await
        .expect("validate");
    redeem(&w, &b, "ONCE", &uuid()).await;
    given_back(&w, &a).await;
    let totals_before = totals(&w.db.pool).await;
    let subject_a = subject(&a.user_id);
    let doc = handler.export(&subject_a).await.expect("export");
    assert_eq!(redemptions(&doc), vec![row(&a1, false)]);

    assert_eq!(
        handler.erase(&subject_a).await.expect("erase"),
        Erasure::default()
            .pseudonymised("redemptions", 1)
            .pseudonymised("usage counts", 1)
            .pseudonymised("cached redemptions", 1)
            .pseudonymised("cached usage counts", 2)
            .removed("validation budgets", 1)
    );
    nowhere(&w, &a.user_id).await;
    assert_eq!(totals(&w.db.pool).await, totals_before);
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase again"),
        nothing()
    );
}
