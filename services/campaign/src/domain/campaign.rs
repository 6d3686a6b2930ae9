//! A campaign: what it sends (channel, content), to whom (segment), when (schedule), within
//! which limits (caps, quiet hours, budget), and the lifecycle DRAFT → SCHEDULED → RUNNING ⇄
//! PAUSED → COMPLETED | CANCELLED with each move checked here.

use chrono::{DateTime, Duration, Utc};
use titan_kit::{input::InputError, money::Currency};
use uuid::Uuid;

use super::{segment::Segment, template::Template, trigger::Trigger, variants::Variants};

/// A campaign's id (UUIDv7, so ids sort by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(Uuid);

impl CampaignId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if s.is_empty() {
            return Err(InputError::new(field, "is required"));
        }
        Uuid::parse_str(s).map(Self).map_err(|_| {
            InputError::new(field, format!("{:?} is not a campaign id (a UUID)", cut(s)))
        })
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for CampaignId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// At most 40 characters of client input in a message.
pub(crate) fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Where a campaign's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Push,
    Sms,
    Banner,
    Popup,
}

impl Channel {
    pub const ALL: [Self; 5] = [
        Self::Email,
        Self::Push,
        Self::Sms,
        Self::Banner,
        Self::Popup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Push => "PUSH",
            Self::Sms => "SMS",
            Self::Banner => "BANNER",
            Self::Popup => "POPUP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Served to clients by a query instead of pushed through a provider.
    pub fn in_app(self) -> bool {
        matches!(self, Self::Banner | Self::Popup)
    }

    /// Whether the message has a subject line (an SMS and a banner are one text).
    pub fn has_subject(self) -> bool {
        matches!(self, Self::Email | Self::Push | Self::Popup)
    }
}

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl Status {
    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Scheduled => "SCHEDULED",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A move an admin asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Schedule,
    Pause,
    Resume,
    Cancel,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    /// The status after the move, or `None` when `from` does not allow it: only DRAFT is
    /// scheduled, only RUNNING pauses, only PAUSED resumes, and nothing finished changes.
    pub fn apply(self, from: Status) -> Option<Status> {
        match (self, from) {
            (Self::Schedule, Status::Draft) => Some(Status::Scheduled),
            (Self::Pause, Status::Running) => Some(Status::Paused),
            (Self::Resume, Status::Paused) => Some(Status::Running),
            (
                Self::Cancel,
                Status::Draft | Status::Scheduled | Status::Running | Status::Paused,
            ) => Some(Status::Cancelled),
            _ => None,
        }
    }
}

/// At most `max_per_user` messages of any campaign to one user in `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_per_user: u32,
    pub window_hours: u32,
}

impl Caps {
    pub const NONE: Self = Self {
        max_per_user: 0,
        window_hours: 0,
    };

    pub fn new(max_per_user: u32, window_hours: u32) -> Result<Self, InputError> {
        if max_per_user == 0 {
            return Ok(Self::NONE);
        }
        if !(1..=720).contains(&window_hours) {
            return Err(InputError::new(
                "caps.window_hours",
                format!("{window_hours} is outside 1..=720 (a cap needs a window)"),
            ));
        }
        if max_per_user > 1000 {
            return Err(InputError::new(
                "caps.max_per_user",
                format!("{max_per_user} is above 1000"),
            ));
        }
        Ok(Self {
            max_per_user,
            window_hours,
        })
    }

    pub fn window(self) -> Option<Duration> {
        (self.max_per_user > 0).then(|| Duration::hours(i64::from(self.window_hours)))
    }

    /// Whether one more message is allowed to a user who got `recent` in the window.
    pub fn allows(self, recent: u64) -> bool {
        self.max_per_user == 0 || recent < u64::from(self.max_per_user)
    }
}

/// Local hours `[start, end)` in which nothing is sent; may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start_hour: u32,
    pub end_hour: u32,
}

impl QuietHours {
    pub const NONE: Self = Self {
        start_hour: 0,
        end_hour: 0,
    };

    pub fn new(start_hour: u32, end_hour: u32) -> Result<Self, InputError> {
        for (field, h) in [
            ("quiet_hours.start_hour", start_hour),
            ("quiet_hours.end_hour", end_hour),
        ] {
            if h > 23 {
                return Err(InputError::new(field, format!("{h} is outside 0..=23")));
            }
        }
        Ok(Self {
            start_hour,
            end_hour,
        })
    }

    pub fn is_none(self) -> bool {
        self.start_hour == self.end_hour
    }

    /// When a message due at `at` may go out for a user in `tz`: `at` itself outside the
    /// quiet period, else the period's end (local `end_hour`:00, today or tomorrow).
    pub fn release(self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
        use chrono::{TimeZone, Timelike};
        if self.is_none() {
            return at;
        }
        let local = at.with_timezone(&tz);
        let hour = local.hour();
        let quiet = if self.start_hour < self.end_hour {
            hour >= self.start_hour && hour < self.end_hour
        } else {
            hour >= self.start_hour || hour < self.end_hour
        };
        if !quiet {
            return at;
        }
        let mut day = local.date_naive();
        if hour >= self.end_hour {
            day = day.succ_opt().unwrap_or(day);
        }
        let end = day
            .and_hms_opt(self.end_hour, 0, 0)
            .unwrap_or(local.naive_local());
        // A clock change may skip the hour (earliest valid instant) or repeat it (the first).
        match tz.from_local_datetime(&end) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                t.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                at + Duration::hours(1) - Duration::minutes(i64::from(local.minute()))
            }
        }
    }
}

/// When a campaign sends: once at `start_at`, or every `repeat_every_hours` from it until
/// `end_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub start_at: DateTime<Utc>,
    pub repeat_every_hours: u32,
    pub end_at: Option<DateTime<Utc>>,
}

impl Schedule {
    pub fn new(
        start_at: DateTime<Utc>,
        repeat_every_hours: u32,
        end_at: Option<DateTime<Utc>>,
    ) -> Result<Self, InputError> {
        if let Some(end) = end_at
            && end <= start_at
        {
            return Err(InputError::new(
                "schedule.end_at",
                format!("{end} is not after start_at {start_at}"),
            ));
        }
        if repeat_every_hours > 0 {
            if repeat_every_hours > 8760 {
                return Err(InputError::new(
                    "schedule.repeat_every_hours",
                    format!("{repeat_every_hours} is outside 1..=8760"),
                ));
            }
            if end_at.is_none() {
                return Err(InputError::new(
                    "schedule.end_at",
                    "is required when the campaign repeats",
                ));
            }
        }
        Ok(Self {
            start_at,
            repeat_every_hours,
            end_at,
        })
    }

    /// When occurrence `n` (0 = the first) is due, or `None` past the end.
    pub fn occurrence(&self, n: u32) -> Option<DateTime<Utc>> {
        if n > 0 && self.repeat_every_hours == 0 {
            return None;
        }
        let at = self.start_at + Duration::hours(i64::from(self.repeat_every_hours) * i64::from(n));
        match self.end_at {
            Some(end) if at >= end => None,
            _ => Some(at),
        }
    }
}

/// A validated campaign definition, as CreateCampaign stores it.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub channel: Channel,
    pub template: Template,
    pub segment: Segment,
    pub caps: Caps,
    pub quiet_hours: QuietHours,
    pub budget: i64,
    pub cost_per_message: i64,
    pub currency: Currency,
    /// A TRIGGERED campaign's trigger (its segment is then [`Segment::anyone`]); `None`: the
    /// segment's members are snapshot at each scheduled occurrence.
    pub trigger: Option<Trigger>,
    /// A/B content by the variant an abtesting experiment assigns each recipient.
    pub variants: Option<Variants>,
}

impl NewCampaign {
    /// Checks the parts that depend on each other; each part was parsed on its own before.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        channel: Channel,
        template: Template,
        segment: Segment,
        caps: Caps,
        quiet_hours: QuietHours,
        budget: i64,
        cost_per_message: i64,
        currency: &str,
    ) -> Result<Self, InputError> {
        let trimmed = name.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 200 {
            return Err(InputError::new("name", "must have 1-200 characters"));
        }
        if budget <= 0 {
            return Err(InputError::new(
                "budget",
                format!("{budget} is not above 0"),
            ));
        }
        if cost_per_message < 0 {
            return Err(InputError::new(
                "cost_per_message",
                format!("{cost_per_message} is negative"),
            ));
        }
        let currency =
            Currency::parse(currency).map_err(|e| InputError::new("currency", e.to_string()))?;
        if channel.has_subject() && template.subject_source().is_empty() {
            return Err(InputError::new(
                "content.subject",
                format!("is required for {}", channel.as_str()),
            ));
        }
        Ok(Self {
            name: trimmed.to_owned(),
            channel,
            template,
            segment,
            caps,
            quiet_hours,
            budget,
            cost_per_message,
            currency,
            trigger: None,
            variants: None,
        })
    }

    /// The same campaign with A/B content; each variant's subject is required as the main
    /// one is.
    pub fn with_variants(self, variants: Variants) -> Result<Self, InputError> {
        if self.channel.has_subject() {
            for (i, v) in variants.contents.iter().enumerate() {
                if v.template.subject_source().is_empty() {
                    return Err(InputError::new(
                        format!("variants.contents[{i}].content.subject"),
                        format!("is required for {}", self.channel.as_str()),
                    ));
                }
            }
        }
        Ok(Self {
            variants: Some(variants),
            ..self
        })
    }

    /// The same campaign sent to whoever triggers it instead of a segment.
    pub fn triggered(self, trigger: Trigger) -> Self {
        Self {
            segment: Segment::anyone(),
            trigger: Some(trigger),
            ..self
        }
    }
}

/// A stored campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: CampaignId,
    pub spec: NewCampaign,
    pub status: Status,
    pub schedule: Option<Schedule>,
    pub spent: i64,
    pub created_at: DateTime<Utc>,
}

impl Campaign {
    /// How many more messages the budget pays for (unbounded when messages are free).
    pub fn affordable(&self, wanted: u32) -> u32 {
        let cost = self.spec.cost_per_message;
        if cost == 0 {
            return wanted;
        }
        let left = (self.spec.budget - self.spent).max(0) / cost;
        u32::try_from(left).unwrap_or(u32::MAX).min(wanted)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn only_the_allowed_moves_happen() {
        use Status::*;
        use Transition::*;
        for (t, from, to) in [
            (Schedule, Draft, Some(Scheduled)),
            (Schedule, Scheduled, None),
            (Schedule, Running, None),
            (Pause, Running, Some(Paused)),
            (Pause, Scheduled, None),
            (Resume, Paused, Some(Running)),
            (Resume, Running, None),
            (Cancel, Draft, Some(Cancelled)),
            (Cancel, Paused, Some(Cancelled)),
            (Cancel, Completed, None),
            (Cancel, Cancelled, None),
        ] {
            assert_eq!(t.apply(from), to, "{t:?} from {from:?}");
        }
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_the_users_zone() {
        let q = QuietHours::new(22, 8).expect("valid");
        let paris: chrono_tz::Tz = "Europe/Paris".parse().expect("zone");
        // 21:30 UTC in December is 22:30 in Paris: quiet until 08:00 Paris = 07:00 UTC.
        assert_eq!(
            q.release(at(2026, 12, 6, 21, 30), paris),
            at(2026, 12, 7, 7, 0)
        );
        // 02:00 UTC = 03:00 Paris: the same night's end.
        assert_eq!(
            q.release(at(2026, 12, 7, 2, 0), paris),
            at(2026, 12, 7, 7, 0)
        );
        // 07:00 UTC = 08:00 Paris: allowed.
        assert_eq!(
            q.release(at(2026, 12, 7, 7, 0), paris),
            at(2026, 12, 7, 7, 0)
        );
        // The same instant in UTC is not quiet for a user in New York (16:30 there).
        let ny: chrono_tz::Tz = "America/New_York".parse().expect("zone");
        assert_eq!(
            q.release(at(2026, 12, 6, 21, 30), ny),
            at(2026, 12, 6, 21, 30)
        );
    }

    #[test]
    fn daytime_quiet_hours_end_the_same_day() {
        let q = QuietHours::new(12, 14).expect("valid");
        let utc = chrono_tz::UTC;
        assert_eq!(
            q.release(at(2026, 1, 1, 13, 59), utc),
            at(2026, 1, 1, 14, 0)
        );
        assert_eq!(
            q.release(at(2026, 1, 1, 11, 59), utc),
            at(2026, 1, 1, 11, 59)
        );
        assert_eq!(
            QuietHours::NONE.release(at(2026, 1, 1, 3, 0), utc),
            at(2026, 1, 1, 3, 0)
        );
    }

    #[test]
    fn schedules_refuse_an_end_before_the_start_and_stop_at_the_end() {
        let start = at(2026, 1, 1, 0, 0);
        assert_eq!(
            Schedule::new(start, 0, Some(start)).map_err(|e| e.field),
            Err("schedule.end_at".to_string())
        );
        assert_eq!(
            Schedule::new(start, 24, None).map_err(|e| e.field),
            Err("schedule.end_at".to_string())
        );
        let s = Schedule::new(start, 24, Some(at(2026, 1, 3, 0, 0))).expect("valid");
        assert_eq!(s.occurrence(0), Some(start));
        assert_eq!(s.occurrence(1), Some(at(2026, 1, 2, 0, 0)));
        assert_eq!(s.occurrence(2), None);
        let once = Schedule::new(start, 0, None).expect("valid");
        assert_eq!(once.occurrence(1), None);
    }

    #[test]
    fn caps_count_messages_in_the_window() {
        assert_eq!(
            Caps::new(2, 0).map_err(|e| e.field),
            Err("caps.window_hours".into())
        );
        let c = Caps::new(2, 24).expect("valid");
        assert!(c.allows(1));
        assert!(!c.allows(2));
        assert!(Caps::NONE.allows(u64::MAX));
    }
}
