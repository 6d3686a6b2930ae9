//! The gRPC edge: who may award, bad input → InvalidArgument and nothing changed.

use titan_gamification::grpc::Grpc;
use titan_kit::auth::Caller;
use titan_proto::gamification::v1::{self as pb, gamification_service_server::GamificationService};
use tonic::{Code, Request};

use crate::{World, admin, shopper};

fn as_caller<T>(caller: Option<Caller>, body: T) -> Request<T> {
    let mut r = Request::new(body);
    if let Some(c) = caller {
        r.extensions_mut().insert(c);
    }
    r
}

fn award(
    user: &str,
    action: pb::Action,
    source: &str,
    total: Option<pb::Money>,
) -> pb::AwardRequest {
    pb::AwardRequest {
        user_id: user.into(),
        action: action as i32,
        source_id: source.into(),
        purchase_total: total,
    }
}

#[tokio::test]
async fn the_edge_checks_roles_and_input() {
    let w = World::new().await;
    let g = Grpc::new(w.app.clone());
    let service = Caller {
        user_id: "reviews".into(),
        roles: vec!["service".into()],
    };
    let e = g
        .award(as_caller(
            Some(shopper(1)),
            award("shopper-1", pb::Action::Review, "r-1", None),
        ))
        .await
        .expect_err("a shopper cannot award themselves");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = g
        .award(as_caller(
            None,
            award("shopper-1", pb::Action::Review, "r-1", None),
        ))
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), Code::Unauthenticated);
    let bad = [
        award("shopper-1", pb::Action::Unspecified, "r-1", None),
        award("", pb::Action::Review, "r-1", None),
        award("shopper-1", pb::Action::Review, "", None),
        award("shopper-1", pb::Action::Purchase, "o-1", None),
        award(
            "shopper-1",
            pb::Action::Review,
            "r-1",
            Some(pb::Money {
                currency: "USD".into(),
                minor_units: 1,
            }),
        ),
        award(
            "shopper-1",
            pb::Action::Purchase,
            "o-1",
            Some(pb::Money {
                currency: "usd".into(),
                minor_units: 100,
            }),
        ),
        award(
            "shopper-1",
            pb::Action::Purchase,
            "o-1",
            Some(pb::Money {
                currency: "USD".into(),
                minor_units: -100,
            }),
        ),
        award("shopper-1", pb::Action::DailyLogin, "d-1", None),
    ];
    for req in bad {
        let e = g
            .award(as_caller(Some(service.clone()), req.clone()))
            .await
            .expect_err("bad input");
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {}", e.message());
    }
    let ok = g
        .award(as_caller(
            Some(service),
            award("shopper-1", pb::Action::Review, "r-1", None),
        ))
        .await
        .expect("award")
        .into_inner();
    assert_eq!(ok.points, 50);
    assert_eq!(
        w.balance(1).await,
        50,
        "only the good award changed anything"
    );

    let e = g
        .get_leaderboard(as_caller(
            Some(shopper(1)),
            pb::GetLeaderboardRequest { period: 0, page: 0 },
        ))
        .await
        .expect_err("no period");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = g
        .get_account(as_caller(
            Some(shopper(2)),
            pb::GetAccountRequest {
                user_id: "shopper-1".into(),
            },
        ))
        .await
        .expect_err("someone else's");
    assert_eq!(e.code(), Code::PermissionDenied);
    let acct = g
        .get_account(as_caller(
            Some(admin()),
            pb::GetAccountRequest {
                user_id: "shopper-1".into(),
            },
        ))
        .await
        .expect("admin")
        .into_inner()
        .account
        .expect("account");
    assert_eq!((acct.balance, acct.level, acct.next_level_at), (50, 1, 500));
    let e = g
        .redeem_reward(as_caller(
            Some(shopper(1)),
            pb::RedeemRewardRequest {
                request_id: "x".into(),
                reward_id: "nope".into(),
            },
        ))
        .await
        .expect_err("bad id");
    assert_eq!(e.code(), Code::InvalidArgument);
}
