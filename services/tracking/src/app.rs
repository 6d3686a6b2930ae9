//! Tracking's use cases over [`TrackingStore`]: the recipient's and the full view of a record,
//! subscriptions that send the history and then every event appended on any replica, and
//! appends from carriers' webhooks. PostgreSQL is the record; an event reaches subscribers
//! through Redis only after its transaction committed, and a publish that fails is logged
//! (subscribers still see the event in the history when they subscribe again).

use std::{collections::HashSet, future::Future};

use chrono::{DateTime, Utc};
use titan_kit::{Clock, ErrorCode, KitError, ServiceError, auth::Caller, input::InputError};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{Coordinates, Event, NewEvent, Status, input, status_of},
    store::live::{Live, LiveEvent, Update},
};

/// The role of the systems that act for any user (checkout, support tools).
pub const SERVICE_ROLE: &str = "service";
/// The role of operators.
pub const ADMIN_ROLE: &str = "admin";
/// Most events one record holds: the status is recomputed from all of them on each append,
/// and a history is sent whole to a new subscriber, so both stay bounded.
pub const MAX_EVENTS: i32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("no tracking record for {0}")]
    NotFound(String),
    #[error("only a service or an admin may see the full record, with its internal notes")]
    NotAllowed,
    #[error("tracking number {0} already holds {MAX_EVENTS} events")]
    TooManyEvents(String),
    #[error("the subscriber fell behind the record's events and was dropped; subscribe again")]
    SlowSubscriber,
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(TrackingError);

impl ServiceError for TrackingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::NotAllowed => ErrorCode::PermissionDenied,
            Self::TooManyEvents(_) | Self::SlowSubscriber => ErrorCode::ResourceExhausted,
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Invalid(_) => "INVALID_ARGUMENT",
            Self::NotFound(_) => "NOT_FOUND",
            Self::NotAllowed => "NOT_ALLOWED",
            Self::TooManyEvents(_) => "TOO_MANY_EVENTS",
            Self::SlowSubscriber => "SLOW_SUBSCRIBER",
            Self::Kit(e) => return e.reason(),
        })
    }
}

/// A tracking record as stored, its status already recomputed from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: Uuid,
    pub tracking_number: String,
    pub carrier: String,
    pub shipment_id: String,
    pub order_id: String,
    pub service_level: String,
    pub owner_id: String,
    pub status: Status,
    pub location: String,
    pub coordinates: Option<Coordinates>,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub event_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new event with the record as it is after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fresh {
    pub record: Record,
    pub event: Event,
    /// Whether the event moved the status.
    pub applied: bool,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    Fresh(Box<Fresh>),
    /// The source already reported this event id: nothing changed.
    Duplicate,
}

/// Where records and events live.
pub trait TrackingStore: Send + Sync + 'static {
    /// The records with `number`, of `carrier` unless it is empty; at most two.
    fn find(
        &self,
        number: &str,
        carrier: &str,
    ) -> impl Future<Output = Result<Vec<Record>, TrackingError>> + Send;

    /// Every event of the record, in no particular order.
    fn events(
        &self,
        record: Uuid,
    ) -> impl Future<Output = Result<Vec<Event>, TrackingError>> + Send;

    /// Appends `event` from `source` to the record and recomputes it, in one transaction.
    fn append(
        &self,
        record: Uuid,
        source: &str,
        event: &NewEvent,
    ) -> impl Future<Output = Result<Appended, TrackingError>> + Send;

    /// The event `source` reported as `source_event_id`, with its record as it is now and
    /// whether the event moved the status.
    fn appended(
        &self,
        source: &str,
        source_event_id: &str,
    ) -> impl Future<Output = Result<Option<LiveEvent>, TrackingError>> + Send;
}

/// One page of a record's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub record: Record,
    /// The events of the page, oldest first, each with whether it moved the status.
    pub events: Vec<(Event, bool)>,
    /// The offset of the next page, if there is one.
    pub next: Option<u32>,
    /// Events in the history the page was cut from.
    pub total: u32,
}

/// A lookup as a request names it, unchecked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup<'a> {
    pub tracking_number: &'a str,
    pub carrier: &'a str,
    pub page_size: u32,
    pub page_token: &'a str,
}

/// A carrier's checked events for [`Tracking::receive`]: tracking number and event.
pub type CarrierEvents = Vec<(String, NewEvent)>;

/// What a webhook call appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Received {
    pub appended: u32,
    pub duplicates: u32,
}

pub struct Tracking<S> {
    store: S,
    live: Live,
    settings: Settings,
    clock: Clock,
}

impl<S> std::fmt::Debug for Tracking<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking").finish_non_exhaustive()
    }
}

/// Whether the caller sees the full record: a service or an admin. Not the shipment's owner:
/// shipping's owner is the buyer, the recipient whom internal notes are kept from.
pub fn sees_everything(caller: &Caller) -> bool {
    caller.has_role(SERVICE_ROLE) || caller.has_role(ADMIN_ROLE)
}

impl<S: TrackingStore> Tracking<S> {
    pub fn new(store: S, live: Live, settings: Settings, clock: Clock) -> Self {
        Self {
            store,
            live,
            settings,
            clock,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The one record the number (and carrier, when named) designates.
    async fn record(&self, number: &str, carrier: &str) -> Result<Record, TrackingError> {
        let number = input::tracking_number("tracking_number", number)?;
        let carrier = input::carrier("carrier", carrier, true)?;
        let mut found = self.store.find(&number, &carrier).await?;
        match found.len() {
            0 => Err(TrackingError::NotFound(number)),
            1 => Ok(found.remove(0)),
            _ => Err(InputError::new(
                "carrier",
                format!("tracking number {number} is used by several carriers; name the carrier"),
            )
            .into()),
        }
    }

    /// The recipient's view for any signed-in user: only the events that moved the status.
    pub async fn track(&self, lookup: &Lookup<'_>) -> Result<Page, TrackingError> {
        self.page(lookup, false).await
    }

    /// The full view, for a service or an admin.
    pub async fn get(&self, caller: &Caller, lookup: &Lookup<'_>) -> Result<Page, TrackingError> {
        if !sees_everything(caller) {
            return Err(TrackingError::NotAllowed);
        }
        self.page(lookup, true).await
    }

    /// A page of the history: every event when `full`, else those that moved the status.
    async fn page(&self, lookup: &Lookup<'_>, full: bool) -> Result<Page, TrackingError> {
        // Every field is checked before the first read.
        input::tracking_number("tracking_number", lookup.tracking_number)?;
        input::carrier("carrier", lookup.carrier, true)?;
        let (offset, size) = input::page(lookup.page_size, lookup.page_token)?;
        let record = self.record(lookup.tracking_number, lookup.carrier).await?;
        let events = self.store.events(record.id).await?;
        let folded = status_of(&events);
        let history: Vec<(Event, bool)> = folded
            .history
            .iter()
            .filter(|e| full || e.applied)
            .map(|e| (e.event.clone(), e.applied))
            .collect();
        let total = u32::try_from(history.len()).unwrap_or(u32::MAX);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(history.len());
        let end = start.saturating_add(size as usize).min(history.len());
        let next = (end < history.len()).then(|| u32::try_from(end).unwrap_or(u32::MAX));
        Ok(Page {
            record,
            events: history[start..end].to_vec(),
            next,
            total,
        })
    }

    /// A subscription to the record's events: subscribed to its topic first, then the
    /// history read, so an event committed in between arrives on the topic and one already
    /// in the history is skipped there by its id.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        number: &str,
        carrier: &str,
    ) -> Result<Subscription, TrackingError> {
        input::tracking_number("tracking_number", number)?;
        input::carrier("carrier", carrier, true)?;
        let record = self.record(number, carrier).await?;
        let full = sees_everything(caller);
        let capacity = usize::try_from(self.settings.subscriber_buffer).unwrap_or(usize::MAX);
        let listener = self.live.listen(record.id, capacity).await?;
        let events = self.store.events(record.id).await?;
        let folded = status_of(&events);
        let history: Vec<Update> = folded
            .history
            .iter()
            .filter(|e| full || e.applied)
            .map(|e| Update {
                status: folded.status,
                event: e.event.clone(),
                applied: e.applied,
            })
            .collect();
        let sent = history.iter().map(|u| u.event.id).collect();
        Ok(Subscription {
            listener,
            history: history.into_iter(),
            sent,
            full,
        })
    }

    /// Appends the checked events of a carrier's webhook call. Every tracking number is
    /// looked up first: one this carrier does not track refuses the whole call, appending
    /// nothing. Each event is then appended in its own transaction and published.
    pub async fn receive(
        &self,
        carrier: &str,
        events: &CarrierEvents,
    ) -> Result<Received, TrackingError> {
        let mut records = Vec::with_capacity(events.len());
        for (number, _) in events {
            let mut found = self.store.find(number, carrier).await?;
            if found.is_empty() {
                return Err(TrackingError::NotFound(format!("{number} of {carrier}")));
            }
            records.push(found.remove(0).id);
        }
        let source = format!("carrier:{carrier}");
        let mut received = Received::default();
        for (record, (_, event)) in records.into_iter().zip(events) {
            match self.store.append(record, &source, event).await? {
                Appended::Fresh(fresh) => {
                    received.appended += 1;
                    let Fresh {
                        record,
                        event,
                        applied,
                    } = *fresh;
                    self.publish(&LiveEvent {
                        record: record.id,
                        update: Update {
                            status: record.status,
                            event,
                            applied,
                        },
                    })
                    .await;
                }
                Appended::Duplicate => received.duplicates += 1,
            }
        }
        Ok(received)
    }

    /// Publishes the event `source` reported as `source_event_id`, after the consumer's
    /// transaction committed it; nothing when it appended nothing.
    pub async fn publish_appended(&self, source: &str, source_event_id: &str) {
        match self.store.appended(source, source_event_id).await {
            Ok(Some(live)) => self.publish(&live).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(source, source_event_id, error = %e, "cannot read an appended event to publish it; subscribers see it when they subscribe again")
            }
        }
    }

    async fn publish(&self, live: &LiveEvent) {
        if let Err(e) = self.live.publish(live).await {
            tracing::warn!(record = %live.record, error = %e, "cannot publish an appended event; subscribers see it when they subscribe again");
        }
    }
}

/// A `Subscribe` stream's source: the history, then live events not sent yet.
#[derive(Debug)]
pub struct Subscription {
    listener: titan_kit::realtime::Listener,
    history: std::vec::IntoIter<Update>,
    /// Ids already sent: the history's, then each live one.
    sent: HashSet<Uuid>,
    /// Whether the subscriber sees every event (else only those that moved the status).
    full: bool,
}

impl Subscription {
    /// Whether the subscriber gets the full events.
    pub fn full(&self) -> bool {
        self.full
    }

    /// The next update; [`TrackingError::SlowSubscriber`] once the subscriber fell behind.
    pub async fn next(&mut self) -> Result<Update, TrackingError> {
        if let Some(update) = self.history.next() {
            return Ok(update);
        }
        loop {
            let frame = self
                .listener
                .next()
                .await
                .map_err(|_| TrackingError::SlowSubscriber)?;
            let Some(update) = crate::store::live::parse_frame(frame.as_str()) else {
                tracing::warn!("ignoring a malformed tracking frame");
                continue;
            };
            if (self.full || update.applied) && self.sent.insert(update.event.id) {
                return Ok(update);
            }
        }
    }
}
