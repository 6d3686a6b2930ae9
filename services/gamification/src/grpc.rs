//! The gamification gRPC edge: proto ↔ domain, role checks, errors → status.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_kit::{
    auth,
    error::to_status,
    money::Money,
    wire::{self, timestamp},
};
use titan_proto::gamification::v1::{self as pb, gamification_service_server::GamificationService};
use tonic::{Request, Response, Status};

use crate::{
    app::{
        Account, Entry, Gamification, GamificationError, Leaderboards, LedgerStore, Mission, Reward,
    },
    domain::{Period, Reason},
};

const DOMAIN: &str = "gamification.titan.dev";
const ADMIN: &str = "admin";
/// Other services awarding points on a shopper's behalf.
const SERVICE_ROLE: &str = "service";

fn status(e: GamificationError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(msg: impl Into<String>) -> Status {
    status(GamificationError::Invalid(msg.into()))
}

fn time(field: &str, t: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    wire::required_time(field, t.as_ref()).map_err(invalid)
}

fn reason(action: i32) -> Result<Reason, Status> {
    match pb::Action::try_from(action) {
        Ok(pb::Action::Purchase) => Ok(Reason::Purchase),
        Ok(pb::Action::Review) => Ok(Reason::Review),
        Ok(pb::Action::Referral) => Ok(Reason::Referral),
        Ok(pb::Action::SocialShare) => Ok(Reason::SocialShare),
        Ok(pb::Action::DailyLogin) => Ok(Reason::DailyLogin),
        _ => Err(invalid(
            "action is required: PURCHASE, REVIEW, REFERRAL or SOCIAL_SHARE",
        )),
    }
}

fn action(reason: &str) -> pb::Action {
    match Reason::parse(reason) {
        Some(Reason::Purchase) => pb::Action::Purchase,
        Some(Reason::Review) => pb::Action::Review,
        Some(Reason::Referral) => pb::Action::Referral,
        Some(Reason::SocialShare) => pb::Action::SocialShare,
        Some(Reason::DailyLogin) => pb::Action::DailyLogin,
        _ => pb::Action::Unspecified,
    }
}

fn period(p: i32) -> Result<Period, Status> {
    match pb::Period::try_from(p) {
        Ok(pb::Period::Daily) => Ok(Period::Daily),
        Ok(pb::Period::Weekly) => Ok(Period::Weekly),
        Ok(pb::Period::AllTime) => Ok(Period::AllTime),
        _ => Err(invalid("period is required: DAILY, WEEKLY or ALL_TIME")),
    }
}

fn account(a: Account) -> pb::Account {
    pb::Account {
        user_id: a.user_id,
        balance: a.balance,
        lifetime_points: a.lifetime,
        level: a.level,
        next_level_at: a.next_level_at.unwrap_or(0),
        badges: a.badges.iter().map(|b| b.as_str().to_owned()).collect(),
        purchases: a.purchases,
        reviews: a.reviews,
        check_in_streak: a.streak,
    }
}

fn reward(r: Reward) -> pb::Reward {
    pb::Reward {
        id: r.id.to_string(),
        name: r.name,
        cost: r.cost,
        stock: r.stock,
    }
}

fn mission(m: Mission) -> pb::Mission {
    pb::Mission {
        id: m.id.to_string(),
        name: m.name,
        action: action(&m.reason) as i32,
        target: m.target,
        points: m.points,
        starts_at: Some(timestamp(m.starts_at)),
        ends_at: Some(timestamp(m.ends_at)),
    }
}

fn entry(e: Entry) -> pb::LeaderboardEntry {
    pb::LeaderboardEntry {
        rank: e.rank,
        user_id: e.user_id,
        points: e.points,
    }
}

pub struct Grpc<L, B> {
    app: Arc<Gamification<L, B>>,
}

impl<L, B> std::fmt::Debug for Grpc<L, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<L, B> Grpc<L, B> {
    pub fn new(app: Arc<Gamification<L, B>>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl<L: LedgerStore, B: Leaderboards> GamificationService for Grpc<L, B> {
    async fn award(
        &self,
        request: Request<pb::AwardRequest>,
    ) -> Result<Response<pb::AwardResponse>, Status> {
        auth::caller(&request)?.require_any_role(&[SERVICE_ROLE, ADMIN])?;
        let r = request.into_inner();
        let total = r
            .purchase_total
            .map(|m| Money::parse(m.minor_units, &m.currency))
            .transpose()
            .map_err(|e| invalid(format!("purchase_total: {e}")))?;
        let a = self
            .app
            .award(&r.user_id, reason(r.action)?, &r.source_id, total)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AwardResponse {
            points: a.points,
            duplicate: a.duplicate,
            account: Some(account(a.account)),
            new_badges: a.new_badges.iter().map(|b| b.as_str().to_owned()).collect(),
        }))
    }

    async fn create_reward(
        &self,
        request: Request<pb::CreateRewardRequest>,
    ) -> Result<Response<pb::CreateRewardResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let created = self
            .app
            .create_reward(&caller, &r.request_id, &r.name, r.cost, r.stock)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateRewardResponse {
            reward: Some(reward(created)),
        }))
    }

    async fn create_mission(
        &self,
        request: Request<pb::CreateMissionRequest>,
    ) -> Result<Response<pb::CreateMissionResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let m = r.mission.ok_or_else(|| invalid("mission is required"))?;
        let spec = Mission {
            id: uuid::Uuid::nil(),
            name: m.name,
            reason: reason(m.action)?.as_str().to_owned(),
            target: m.target,
            points: m.points,
            starts_at: time("mission.starts_at", m.starts_at)?,
            ends_at: time("mission.ends_at", m.ends_at)?,
        };
        let created = self
            .app
            .create_mission(&caller, &r.request_id, spec)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateMissionResponse {
            mission: Some(mission(created)),
        }))
    }

    async fn record_login(
        &self,
        request: Request<pb::RecordLoginRequest>,
    ) -> Result<Response<pb::RecordLoginResponse>, Status> {
        let caller = auth::caller(&request)?;
        let d = self
            .app
            .record_login(&caller, request.get_ref().utc_offset_minutes)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RecordLoginResponse {
            awarded: d.awarded,
            points: d.points,
            account: Some(account(d.account)),
        }))
    }

    async fn check_in(
        &self,
        request: Request<pb::CheckInRequest>,
    ) -> Result<Response<pb::CheckInResponse>, Status> {
        let caller = auth::caller(&request)?;
        let d = self
            .app
            .check_in(&caller, request.get_ref().utc_offset_minutes)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CheckInResponse {
            awarded: d.awarded,
            points: d.points,
            streak: d.streak,
            account: Some(account(d.account)),
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let caller = auth::caller(&request)?;
        let a = self
            .app
            .account(&caller, &request.get_ref().user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(account(a)),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let (rows, next) = self
            .app
            .transactions(&caller, &r.user_id, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: rows
                .into_iter()
                .map(|t| pb::Transaction {
                    id: t.id,
                    delta: t.delta,
                    reason: t.reason.as_str().to_owned(),
                    source_id: t.source_id,
                    balance_after: t.balance_after,
                    at: Some(timestamp(t.at)),
                })
                .collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_rewards(
        &self,
        request: Request<pb::ListRewardsRequest>,
    ) -> Result<Response<pb::ListRewardsResponse>, Status> {
        auth::caller(&request)?;
        let rewards = self.app.rewards().await.map_err(status)?;
        Ok(Response::new(pb::ListRewardsResponse {
            rewards: rewards.into_iter().map(reward).collect(),
        }))
    }

    async fn redeem_reward(
        &self,
        request: Request<pb::RedeemRewardRequest>,
    ) -> Result<Response<pb::RedeemRewardResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let (id, got, a) = self
            .app
            .redeem_reward(&caller, &r.request_id, &r.reward_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RedeemRewardResponse {
            redemption_id: id.to_string(),
            reward: Some(reward(got)),
            account: Some(account(a)),
        }))
    }

    async fn list_missions(
        &self,
        request: Request<pb::ListMissionsRequest>,
    ) -> Result<Response<pb::ListMissionsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let ms = self.app.missions(&caller).await.map_err(status)?;
        Ok(Response::new(pb::ListMissionsResponse {
            missions: ms
                .into_iter()
                .map(|p| pb::MissionProgress {
                    mission: Some(mission(p.mission)),
                    progress: p.progress,
                    claimed: p.claimed,
                })
                .collect(),
        }))
    }

    async fn claim_mission(
        &self,
        request: Request<pb::ClaimMissionRequest>,
    ) -> Result<Response<pb::ClaimMissionResponse>, Status> {
        let caller = auth::caller(&request)?;
        let a = self
            .app
            .claim_mission(&caller, &request.get_ref().mission_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ClaimMissionResponse {
            awarded: !a.duplicate,
            account: Some(account(a.account)),
        }))
    }

    async fn get_leaderboard(
        &self,
        request: Request<pb::GetLeaderboardRequest>,
    ) -> Result<Response<pb::GetLeaderboardResponse>, Status> {
        auth::caller(&request)?;
        let r = request.into_inner();
        let (board, entries) = self
            .app
            .leaderboard(period(r.period)?, r.page)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetLeaderboardResponse {
            entries: entries.into_iter().map(entry).collect(),
            board,
        }))
    }

    async fn get_rank(
        &self,
        request: Request<pb::GetRankRequest>,
    ) -> Result<Response<pb::GetRankResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let v = self
            .app
            .rank(&caller, period(r.period)?, &r.user_id, r.neighbours)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetRankResponse {
            entry: v.entry.map(entry),
            above: v.above.into_iter().map(entry).collect(),
            below: v.below.into_iter().map(entry).collect(),
        }))
    }
}
