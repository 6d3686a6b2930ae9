//! Campaign use cases over the store traits: contacts, campaign definitions and their
//! lifecycle, segment estimates, the sender (snapshots of due occurrences or, for a triggered
//! campaign, the start of listening; deliveries claimed in batches and sent through the
//! channel providers with retries, caps, quiet hours, suppressions and the budget), in-app
//! messages, tracked opens/clicks/unsubscribes, and the report with attribution and ROI.

use std::{future::Future, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, stream};
use titan_kit::{Clock, ErrorCode, KitError, ServiceError, idempotency};

use crate::{
    channel::{Channels, Outgoing, SendError},
    config::Settings,
    domain::{
        Bounce, Campaign, CampaignId, Channel, Contact, InputError, LinkKind, LinkSigner, Linked,
        Model, NewCampaign, Personal, Purchase, Schedule, Segment, SegmentQuery, Status, Template,
        Touch, Transition, attributed, roi,
    },
    experiments::{AssignError, Experiments},
    metrics::Metrics,
};

/// Attempts of one message before it is recorded FAILED (the first and three retries).
pub const MAX_ATTEMPTS: u32 = 4;
/// The first retry's wait; each next one doubles it.
pub const FIRST_BACKOFF: StdDuration = StdDuration::from_millis(50);
/// Batches of one campaign claimed, sent and recorded at once (see [`Campaigns::tick`]).
const SEND_LANES: usize = 2;
/// Most campaigns listed per page.
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("campaign {0} not found")]
    NotFound(CampaignId),
    #[error("no email delivery sent with that message_id")]
    NoSuchDelivery,
    #[error("cannot {what} a {from} campaign")]
    InvalidTransition {
        what: &'static str,
        from: &'static str,
    },
    #[error("campaign {0} has spent its budget")]
    BudgetSpent(CampaignId),
    #[error(
        "the {0} channel is not configured in this cell (campaign.smtp, pushProviderUrl or smsProviderUrl)"
    )]
    ChannelOff(&'static str),
    #[error("campaigns with variants need the abtesting service (campaign.abtestingUrl)")]
    ExperimentsOff,
    #[error(transparent)]
    Idempotency(#[from] idempotency::IdempotencyError),
    #[error("template of campaign {0} failed to render: {1}")]
    Render(CampaignId, String),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(CampaignError);

impl ServiceError for CampaignError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) | Self::NoSuchDelivery => ErrorCode::NotFound,
            Self::InvalidTransition { .. }
            | Self::BudgetSpent(_)
            | Self::ChannelOff(_)
            | Self::ExperimentsOff => ErrorCode::FailedPrecondition,
            Self::Idempotency(e) => e.code(),
            Self::Render(..) => ErrorCode::Internal,
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            Self::NotFound(_) | Self::NoSuchDelivery => Some("NOT_FOUND"),
            Self::InvalidTransition { .. } => Some("INVALID_TRANSITION"),
            Self::BudgetSpent(_) => Some("BUDGET_SPENT"),
            Self::ChannelOff(_) => Some("CHANNEL_NOT_CONFIGURED"),
            Self::ExperimentsOff => Some("ABTESTING_NOT_CONFIGURED"),
            Self::Idempotency(e) => e.reason(),
            Self::Render(..) => None,
            Self::Kit(e) => e.reason(),
        }
    }
}

pub type Result<T, E = CampaignError> = std::result::Result<T, E>;

/// A delivery claimed for sending, with what the send needs to know about its user.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub occurrence: u32,
    pub user_id: String,
    /// `None`: the contact was removed after the snapshot.
    pub contact: Option<Contact>,
    /// Unsubscribed from the channel, or bounced.
    pub suppressed: bool,
    /// Messages of any campaign sent to the user inside the campaign's cap window.
    pub recent: u64,
}

/// What became of a claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        at: DateTime<Utc>,
        attempts: u32,
        /// The A/B variant sent ("" without variants).
        variant: String,
    },
    /// Retries exhausted (or a permanent provider refusal).
    Failed {
        error: String,
        attempts: u32,
    },
    /// The recipient address was refused for good: recorded and suppressed from now on.
    Bounced {
        error: String,
        attempts: u32,
    },
    Suppressed,
    Capped,
    NoAddress,
    /// Quiet hours: back to PENDING until then.
    Deferred {
        until: DateTime<Utc>,
    },
}

impl Outcome {
    pub fn status(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "SENT",
            Self::Failed { .. } => "FAILED",
            Self::Bounced { .. } => "BOUNCED",
            Self::Suppressed => "SUPPRESSED",
            Self::Capped => "CAPPED",
            Self::NoAddress => "NO_ADDRESS",
            Self::Deferred { .. } => "PENDING",
        }
    }

    /// Provider calls made (retries included).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Sent { attempts, .. }
            | Self::Failed { attempts, .. }
            | Self::Bounced { attempts, .. } => *attempts,
            Self::Suppressed | Self::Capped | Self::NoAddress | Self::Deferred { .. } => 0,
        }
    }
}

/// Delivery counts of a campaign by status, with its engagements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub bounced: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub capped: u64,
    pub opened: u64,
    pub clicked: u64,
    /// Per A/B variant, by key.
    pub variants: Vec<VariantCounts>,
}

/// Deliveries sent with one A/B variant and the users of them who opened or clicked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantCounts {
    pub key: String,
    pub sent: u64,
    pub opened: u64,
    pub clicked: u64,
}

/// A purchase with the buyer's touches (any campaign) in the attribution window before it.
#[derive(Debug, Clone)]
pub struct Credited {
    pub purchase: Purchase,
    pub touches: Vec<Touch>,
}

/// The report of a campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub counts: Counts,
    pub converted: u64,
    pub revenue: i64,
    pub cost: i64,
    pub roi: Option<f64>,
    pub model: Model,
}

/// An in-app message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InApp {
    pub campaign: CampaignId,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub click_url: String,
}

/// What the sender did in one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub snapshots: u32,
    pub sent: u64,
    pub recovered: u64,
    pub completed: u64,
}

/// The in-app campaigns (with their occurrence) to show a user, and the user's contact.
pub type Shown = (Vec<(Campaign, u32)>, Option<Contact>);

/// PostgreSQL: the record of campaigns and deliveries.
pub trait CampaignStore: Send + Sync + 'static {
    fn put_contact(
        &self,
        c: &Contact,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Stores a DRAFT, or returns the id the same request stored before.
    fn create(
        &self,
        key: &idempotency::Key,
        c: &Campaign,
    ) -> impl Future<Output = Result<CampaignId>> + Send;
    fn get(&self, id: CampaignId) -> impl Future<Output = Result<Option<Campaign>>> + Send;
    /// Newest first, after `after` when given.
    fn list(
        &self,
        after: Option<CampaignId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Campaign>>> + Send;
    /// Applies `t` under the campaign's row lock (a replayed request changes nothing).
    fn transition(
        &self,
        key: &idempotency::Key,
        id: CampaignId,
        t: Transition,
        schedule: Option<Schedule>,
    ) -> impl Future<Output = Result<Campaign>> + Send;
    /// Takes the oldest due occurrence of a SCHEDULED or RUNNING campaign for `lease` (so one
    /// replica snapshots it; another takes it again only if this one does not finish).
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<(Campaign, u32)>>> + Send;
    /// Records occurrence `n`'s audience as PENDING deliveries (contacts in `levels` only;
    /// users without an address for the channel as NO_ADDRESS), makes the campaign RUNNING
    /// and moves it to its next occurrence, once.
    fn record_snapshot(
        &self,
        c: &Campaign,
        n: u32,
        users: &[String],
        levels: (u32, u32),
        due_at: DateTime<Utc>,
        next_due: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// RUNNING campaigns of provider channels with deliveries due at `now`.
    fn sendable(&self, now: DateTime<Utc>) -> impl Future<Output = Result<Vec<CampaignId>>> + Send;
    /// Claims up to `limit` due deliveries of a RUNNING campaign (as many as the budget still
    /// pays for, which is reserved), under the campaign's row lock.
    fn claim(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Option<(Campaign, Vec<Claimed>)>>> + Send;
    /// Takes up to `wanted` of the `rate` deliveries every replica together may claim in the
    /// epoch second `second`; returns how many it got.
    fn take_sends(
        &self,
        second: i64,
        wanted: u32,
        rate: u32,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Gives back `n` sends taken in `second` and not claimed.
    fn give_back_sends(&self, second: i64, n: u32) -> impl Future<Output = Result<()>> + Send;
    /// Records the outcomes of claimed deliveries and gives back the budget of those not sent.
    fn record(
        &self,
        c: &Campaign,
        outcomes: &[(u32, String, Outcome)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deliveries claimed before `cutoff` and never recorded become UNKNOWN (never resent).
    fn recover(&self, cutoff: DateTime<Utc>) -> impl Future<Output = Result<u64>> + Send;
    /// RUNNING campaigns with nothing left to send (or no budget left) become COMPLETED.
    fn complete(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64>> + Send;
    /// How many of `users` have a contact in `levels`.
    fn count_contacts(
        &self,
        users: &[String],
        levels: (u32, u32),
    ) -> impl Future<Output = Result<u64>> + Send;
    /// The in-app deliveries of `user` to show now: each shown for the first time is recorded
    /// SENT (inside caps and budget); returns the campaigns with the user's contact.
    fn show_in_app(
        &self,
        user: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Shown>> + Send;
    /// Records an open or click once per (campaign, user); false when already recorded or
    /// the link's message is not the user's (any more: an erasure moved it to the pseudonym,
    /// so links in messages sent before it record nothing).
    fn engage(
        &self,
        l: &Linked,
        kind: LinkKind,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records a bounce of a SENT (or already BOUNCED) email delivery: a permanent one makes
    /// it BOUNCED and suppresses its user for EMAIL. False when there is no such delivery.
    fn bounce(&self, b: &Bounce, at: DateTime<Utc>) -> impl Future<Output = Result<bool>> + Send;
    /// Suppresses the link's user for the link's channel, `reason` recorded, unless the
    /// link's message is not the user's (any more), as for [`CampaignStore::engage`].
    fn suppress(
        &self,
        l: &Linked,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn counts(&self, id: CampaignId) -> impl Future<Output = Result<Counts>> + Send;
    /// Purchases in the campaign's currency by users it reached, within `window` after a
    /// touch, each with the buyer's touches of every campaign in the window before it.
    fn credited(
        &self,
        c: &Campaign,
        window: Duration,
    ) -> impl Future<Output = Result<Vec<Credited>>> + Send;
}

/// ClickHouse: segment members.
pub trait Audience: Send + Sync + 'static {
    /// The users (sorted) the compiled query selects.
    fn members(&self, q: &SegmentQuery) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// Everything the use cases need besides the stores.
#[derive(Clone)]
pub struct Parts {
    pub settings: Settings,
    pub channels: Channels,
    /// The abtesting client for campaigns with variants; `None`: such campaigns are refused.
    pub experiments: Option<Experiments>,
    pub links: LinkSigner,
    /// `https://shop.example` → links `https://shop.example/v1/campaign/...`.
    pub public_base_url: String,
    pub clock: Clock,
    pub metrics: Metrics,
    /// How long a claimed delivery may stay unrecorded before it is UNKNOWN.
    pub claim_timeout: Duration,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("public_base_url", &self.public_base_url)
            .field("claim_timeout", &self.claim_timeout)
            .finish_non_exhaustive()
    }
}

/// The campaign service.
#[derive(Debug)]
pub struct Campaigns<S, A> {
    store: S,
    audience: A,
    parts: Parts,
}

impl<S: CampaignStore, A: Audience> Campaigns<S, A> {
    pub fn new(store: S, audience: A, parts: Parts) -> Self {
        Self {
            store,
            audience,
            parts,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.parts.clock)()
    }

    pub fn links(&self) -> &LinkSigner {
        &self.parts.links
    }

    pub async fn put_contact(&self, c: &Contact) -> Result<()> {
        self.store.put_contact(c, self.now()).await
    }

    pub async fn create(&self, key: &idempotency::Key, spec: NewCampaign) -> Result<Campaign> {
        if !self.parts.channels.configured(spec.channel) {
            return Err(CampaignError::ChannelOff(spec.channel.as_str()));
        }
        if spec.variants.is_some() && self.parts.experiments.is_none() {
            return Err(CampaignError::ExperimentsOff);
        }
        let c = Campaign {
            id: CampaignId::generate(),
            spec,
            status: Status::Draft,
            schedule: None,
            spent: 0,
            created_at: self.now(),
        };
        let id = self.store.create(key, &c).await?;
        self.get(id).await
    }

    pub async fn get(&self, id: CampaignId) -> Result<Campaign> {
        self.store.get(id).await?.ok_or(CampaignError::NotFound(id))
    }

    pub async fn list(&self, after: Option<CampaignId>, limit: u32) -> Result<Vec<Campaign>> {
        self.store.list(after, limit.clamp(1, MAX_PAGE)).await
    }

    pub async fn transition(
        &self,
        key: &idempotency::Key,
        id: CampaignId,
        t: Transition,
        schedule: Option<Schedule>,
    ) -> Result<Campaign> {
        if let Some(s) = schedule
            && s.repeat_every_hours > 0
            && self.get(id).await?.spec.trigger.is_some()
        {
            return Err(InputError::new(
                "schedule.repeat_every_hours",
                "a triggered campaign does not repeat: it sends whenever its event arrives",
            )
            .into());
        }
        self.store.transition(key, id, t, schedule).await
    }

    /// Segment members now who have a contact.
    pub async fn estimate(&self, segment: &Segment) -> Result<u64> {
        let q = segment.compile(self.now());
        let users = self.audience.members(&q).await?;
        self.store.count_contacts(&users, q.levels).await
    }

    fn link(&self, kind: LinkKind, l: &Linked) -> String {
        let path = match kind {
            LinkKind::Open => "o",
            LinkKind::Click => "c",
            LinkKind::Unsubscribe => "u",
        };
        format!(
            "{}/v1/campaign/{path}/{}",
            self.parts.public_base_url,
            self.parts.links.sign(kind, l)
        )
    }

    /// One sender turn: stale claims recovered, due occurrences snapshot, due deliveries sent
    /// until none is left, finished campaigns completed. Any replica may run it at any time.
    pub async fn tick(&self) -> Result<Tick> {
        let now = self.now();
        let mut tick = Tick {
            recovered: self.store.recover(now - self.parts.claim_timeout).await?,
            ..Tick::default()
        };
        while self.snapshot_one().await? {
            tick.snapshots += 1;
        }
        for id in self.store.sendable(self.now()).await? {
            // Batches of one campaign overlap: while one lane's messages are in flight, another
            // claims its next batch or records its last one, so the relay is not left idle
            // waiting on PostgreSQL. Claims skip each other's rows (SKIP LOCKED), so lanes
            // never share a delivery.
            let lanes = (0..SEND_LANES).map(|_| async move {
                let mut sent = 0;
                while let Some(n) = self.send_batch(id).await? {
                    sent += n;
                }
                Ok::<_, CampaignError>(sent)
            });
            tick.sent += futures::future::try_join_all(lanes)
                .await?
                .into_iter()
                .sum::<u64>();
        }
        tick.completed = self.store.complete(self.now()).await?;
        self.parts.metrics.recovered(tick.recovered);
        Ok(tick)
    }

    /// Snapshots one due occurrence; false when none is due.
    pub async fn snapshot_one(&self) -> Result<bool> {
        let now = self.now();
        let Some((c, n)) = self.store.claim_due(now, Duration::minutes(5)).await? else {
            return Ok(false);
        };
        let Some(schedule) = c.schedule else {
            return Ok(false);
        };
        let due_at = schedule.occurrence(n).unwrap_or(now);
        if c.spec.trigger.is_some() {
            // A triggered campaign takes no snapshot: from now on (RUNNING) its events start
            // messages, and it has no next occurrence to schedule.
            self.store
                .record_snapshot(&c, n, &[], (0, 0), due_at, None)
                .await?;
            tracing::info!(campaign = %c.id, "triggered campaign listening");
            return Ok(true);
        }
        let q = c.spec.segment.compile(now);
        let users = self.audience.members(&q).await?;
        let next = schedule.occurrence(n + 1);
        let recorded = self
            .store
            .record_snapshot(&c, n, &users, q.levels, due_at, next)
            .await?;
        tracing::info!(campaign = %c.id, occurrence = n, members = users.len(), recorded, "segment snapshot taken");
        Ok(true)
    }

    /// Claims, sends and records one batch of `id`; `None` when nothing was claimed (nothing
    /// due, or the global send rate used up for this second).
    pub async fn send_batch(&self, id: CampaignId) -> Result<Option<u64>> {
        let now = self.now();
        let second = now.timestamp();
        let rate = self.parts.settings.send_rate_per_second;
        let mut limit = self.parts.settings.send_batch_size;
        if rate > 0 {
            limit = self.store.take_sends(second, limit, rate).await?;
            if limit == 0 {
                return Ok(None);
            }
        }
        let claimed = self.store.claim(id, now, limit).await?;
        let got = claimed
            .as_ref()
            .map_or(0, |(_, d)| u32::try_from(d.len()).unwrap_or(u32::MAX));
        if rate > 0 && got < limit {
            self.store.give_back_sends(second, limit - got).await?;
        }
        let Some((c, claimed)) = claimed else {
            return Ok(None);
        };
        if claimed.is_empty() {
            return Ok(None);
        }
        let outcomes: Vec<(u32, String, Outcome)> = stream::iter(claimed)
            .map(|d| {
                let c = &c;
                async move {
                    let outcome = self.deliver(c, &d, now).await;
                    (d.occurrence, d.user_id, outcome)
                }
            })
            // Each lane takes the whole budget, not its share: a lane spends part of its time
            // claiming or recording in PostgreSQL, and then the other lane alone must be able
            // to keep every relay session busy. While both send, the excess waits on the
            // relay pool's semaphore (bounded: lanes × budget rendered messages).
            .buffer_unordered(self.parts.channels.concurrency())
            .collect()
            .await;
        for (_, _, o) in &outcomes {
            self.parts.metrics.delivery(c.spec.channel, o.status());
        }
        let sent = outcomes
            .iter()
            .filter(|o| matches!(o.2, Outcome::Sent { .. }))
            .count() as u64;
        self.store.record(&c, &outcomes).await?;
        Ok(Some(sent))
    }

    /// The checks and the send of one delivery.
    async fn deliver(&self, c: &Campaign, d: &Claimed, now: DateTime<Utc>) -> Outcome {
        let Some(contact) = &d.contact else {
            return Outcome::NoAddress;
        };
        if d.suppressed {
            return Outcome::Suppressed;
        }
        if !c.spec.caps.allows(d.recent) {
            return Outcome::Capped;
        }
        let release = c.spec.quiet_hours.release(now, contact.time_zone);
        if release > now {
            return Outcome::Deferred { until: release };
        }
        let to = match c.spec.channel {
            Channel::Email => &contact.email,
            Channel::Sms => &contact.phone,
            Channel::Push => &contact.push_token,
            Channel::Banner | Channel::Popup => return Outcome::NoAddress,
        };
        if to.is_empty() {
            return Outcome::NoAddress;
        }
        let linked = Linked {
            campaign: c.id,
            occurrence: d.occurrence,
            user_id: d.user_id.clone(),
            channel: c.spec.channel,
        };
        let unsubscribe = self.link(LinkKind::Unsubscribe, &linked);
        let (template, variant) = match self.content(c, &d.user_id).await {
            Ok(chosen) => chosen,
            Err(e) => {
                return Outcome::Failed {
                    error: e.to_string(),
                    attempts: 0,
                };
            }
        };
        let message = match self.render(c, template, contact, &linked, &unsubscribe) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Failed {
                    error: e.to_string(),
                    attempts: 0,
                };
            }
        };
        let mut body = message.body;
        if c.spec.channel == Channel::Email {
            // The open pixel: counted once per user by the open route.
            body.push_str(&format!(
                "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\">",
                self.link(LinkKind::Open, &linked)
            ));
        }
        let out = Outgoing {
            channel: c.spec.channel,
            to: to.clone(),
            subject: message.subject,
            body,
            unsubscribe_url: unsubscribe,
            message_id: crate::domain::bounce::message_id(c.id, d.occurrence, &d.user_id),
        };
        let mut wait = FIRST_BACKOFF;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.parts.channels.send(&out).await {
                Ok(()) => {
                    return Outcome::Sent {
                        at: self.now(),
                        attempts,
                        variant,
                    };
                }
                Err(SendError::Bounce(error)) => return Outcome::Bounced { error, attempts },
                Err(SendError::Permanent(error)) => return Outcome::Failed { error, attempts },
                Err(SendError::Retry(error)) => {
                    if attempts >= MAX_ATTEMPTS {
                        return Outcome::Failed { error, attempts };
                    }
                    tracing::debug!(campaign = %c.id, attempts, %error, "send failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// The content for `user` and its variant key: the variant abtesting assigns (retried
    /// with backoff while unreachable) when the campaign has variants, its own content when
    /// the variant has none or the campaign has no variants ("").
    async fn content<'c>(
        &self,
        c: &'c Campaign,
        user: &str,
    ) -> Result<(&'c Template, String), AssignError> {
        let (Some(variants), Some(experiments)) = (&c.spec.variants, &self.parts.experiments)
        else {
            return Ok((&c.spec.template, String::new()));
        };
        let mut wait = FIRST_BACKOFF;
        let mut attempts = 0;
        let key = loop {
            attempts += 1;
            match experiments.assign(&variants.experiment_key, user).await {
                Ok(key) => break key,
                Err(AssignError::Retry(e)) if attempts < MAX_ATTEMPTS => {
                    tracing::debug!(campaign = %c.id, attempts, error = %e, "assign failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e),
            }
        };
        Ok((variants.template(&key).unwrap_or(&c.spec.template), key))
    }

    fn render(
        &self,
        c: &Campaign,
        template: &Template,
        contact: &Contact,
        linked: &Linked,
        unsubscribe: &str,
    ) -> Result<crate::domain::Rendered> {
        let click = if template.click_url().is_empty() {
            String::new()
        } else {
            self.link(LinkKind::Click, linked)
        };
        template
            .render(&Personal {
                first_name: &contact.first_name,
                email: &contact.email,
                level: contact.level,
                country: &contact.country,
                campaign_name: &c.spec.name,
                unsubscribe_url: unsubscribe,
                click_url: &click,
            })
            .map_err(|e| CampaignError::Render(c.id, e.to_string()))
    }

    /// The caller's BANNER and POPUP messages now.
    pub async fn in_app(&self, user: &str) -> Result<Vec<InApp>> {
        let (shown, contact) = self.store.show_in_app(user, self.now()).await?;
        let Some(contact) = contact else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(shown.len());
        for (c, occurrence) in shown {
            let linked = Linked {
                campaign: c.id,
                occurrence,
                user_id: user.to_owned(),
                channel: c.spec.channel,
            };
            let unsubscribe = self.link(LinkKind::Unsubscribe, &linked);
            let (template, _) = self
                .content(&c, user)
                .await
                .map_err(|e| CampaignError::Kit(KitError::Other(e.to_string())))?;
            let r = self.render(&c, template, &contact, &linked, &unsubscribe)?;
            out.push(InApp {
                campaign: c.id,
                channel: c.spec.channel,
                subject: r.subject,
                body: r.body,
                click_url: if template.click_url().is_empty() {
                    String::new()
                } else {
                    self.link(LinkKind::Click, &linked)
                },
            });
        }
        Ok(out)
    }

    /// A tracked open: `true` the first time for the user.
    pub async fn opened(&self, token: &str) -> Result<bool> {
        match self.parts.links.verify(LinkKind::Open, token) {
            Some(l) => self.store.engage(&l, LinkKind::Open, self.now()).await,
            None => Ok(false),
        }
    }

    /// A tracked click: where to send the browser (counted once per user), or `None` for a
    /// link that does not verify.
    pub async fn clicked(&self, token: &str) -> Result<Option<String>> {
        let Some(l) = self.parts.links.verify(LinkKind::Click, token) else {
            return Ok(None);
        };
        let Some(c) = self.store.get(l.campaign).await? else {
            return Ok(None);
        };
        self.store.engage(&l, LinkKind::Click, self.now()).await?;
        Ok(Some(c.spec.template.click_url().to_owned()).filter(|u| !u.is_empty()))
    }

    /// Whether an unsubscribe token is genuine (the confirmation page shows nothing else).
    pub fn unsubscribe_link(&self, token: &str) -> Option<Linked> {
        self.parts.links.verify(LinkKind::Unsubscribe, token)
    }

    /// Unsubscribes the link's user from the link's channel; `None` for a forged link. A link
    /// whose message is no longer the user's (the user was erased) unsubscribes nobody: the
    /// service holds no address for them to stop.
    pub async fn unsubscribe(&self, token: &str) -> Result<Option<Channel>> {
        let Some(l) = self.parts.links.verify(LinkKind::Unsubscribe, token) else {
            return Ok(None);
        };
        self.store.suppress(&l, "unsubscribe", self.now()).await?;
        Ok(Some(l.channel))
    }

    /// An asynchronous bounce reported by the bounce processor.
    pub async fn bounced(&self, b: &Bounce) -> Result<()> {
        if self.store.bounce(b, self.now()).await? {
            Ok(())
        } else {
            Err(CampaignError::NoSuchDelivery)
        }
    }

    pub async fn report(&self, id: CampaignId, model: Option<Model>) -> Result<Report> {
        let c = self.get(id).await?;
        let model = model.unwrap_or_else(|| self.default_model());
        let window = Duration::days(i64::from(self.parts.settings.attribution_window_days));
        let counts = self.store.counts(id).await?;
        let mut converted = 0;
        let mut revenue: i64 = 0;
        for credited in self.store.credited(&c, window).await? {
            if let Some(share) =
                attributed(model, window, id, &credited.purchase, &credited.touches)
            {
                converted += 1;
                revenue = revenue.saturating_add(share);
            }
        }
        Ok(Report {
            counts,
            converted,
            revenue,
            cost: c.spent,
            roi: roi(revenue, c.spent),
            model,
        })
    }

    pub fn default_model(&self) -> Model {
        use titan_crds::config::AttributionModel as M;
        match self.parts.settings.attribution {
            M::LastTouch => Model::LastTouch,
            M::FirstTouch => Model::FirstTouch,
            M::Linear => Model::Linear,
            M::TimeDecay => self.time_decay(),
        }
    }

    pub fn time_decay(&self) -> Model {
        Model::TimeDecay {
            half_life: Duration::hours(i64::from(self.parts.settings.time_decay_half_life_hours)),
        }
    }
}
