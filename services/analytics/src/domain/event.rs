//! One tracked event: what a client may send, and how client and bus events become the one row
//! shape of `analytics_events` (docs/analytics.md), with the columns queries filter on
//! (product, order, page, revenue) lifted out of the properties.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use titan_kit::{events::Envelope, money::Currency};

/// The event names of the design; anything else a client sends is `custom.<name>`.
pub const STANDARD_NAMES: [&str; 7] = [
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "checkout",
    "purchase",
    "click",
];
/// Most events one `TrackEvents` call may carry.
pub const MAX_BATCH: usize = 1000;
/// Largest `properties` object, measured as compact JSON.
pub const MAX_PROPERTIES_BYTES: usize = 16 * 1024;
/// Longest plain string field (ids, device, city, ...), in characters.
pub const MAX_FIELD_CHARS: usize = 256;
const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 64;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Bus,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Bus => "bus",
        }
    }
}

/// An event as a client sent it, before any check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvent {
    pub event_id: String,
    pub name: String,
    pub user_id: String,
    pub session_id: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub properties: Map<String, Value>,
    pub device: String,
    pub platform: String,
    pub country: String,
    pub city: String,
}

/// A checked event, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub name: String,
    pub user_id: String,
    pub session_id: String,
    pub at: DateTime<Utc>,
    /// The properties as compact JSON.
    pub properties: String,
    pub device: String,
    pub platform: String,
    pub country: String,
    pub city: String,
    pub cell: String,
    pub product_id: String,
    pub order_id: String,
    pub page: String,
    /// Minor units of `currency`, verified: only bus events carry it; 0 for client events
    /// (whose claimed amount stays, unverified, in `properties`) and events without an amount.
    pub revenue: i64,
    pub currency: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("event_id is required, so that a retried event is counted once")]
    MissingId,
    #[error("event_id {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")]
    BadId(String),
    #[error(
        "event name {0:?} is not one of page_view, product_view, search, add_to_cart, checkout, \
         purchase, click or custom.<name> (lower-case letters, digits, '_' and '.')"
    )]
    BadName(String),
    #[error(
        "timestamp {at} is {ahead_seconds} s in the future; at most {max_seconds} s of clock skew is accepted"
    )]
    InFuture {
        at: DateTime<Utc>,
        ahead_seconds: i64,
        max_seconds: u32,
    },
    #[error("timestamp {0} is before 2000-01-01")]
    TooOld(DateTime<Utc>),
    #[error("{0} is longer than 256 characters")]
    TooLong(&'static str),
    #[error("properties are {0} bytes as JSON; at most 16384 are accepted")]
    PropertiesTooLarge(usize),
    #[error("country {0:?} must be an ISO 3166-1 alpha-2 code such as SG, or empty")]
    BadCountry(String),
    #[error("properties.{field} must be a string or a whole number, got {value}")]
    BadIndexedProperty { field: &'static str, value: String },
    #[error("properties.revenue must be a whole number of minor units, at least 0, got {0}")]
    BadRevenue(String),
    #[error(
        "properties.currency is required with properties.revenue and must be an ISO 4217 code such as USD, got {0:?}"
    )]
    BadCurrency(String),
}

/// Whether `name` may be sent by a client.
pub fn is_client_name(name: &str) -> bool {
    if STANDARD_NAMES.contains(&name) {
        return true;
    }
    name.len() <= MAX_NAME_CHARS
        && name
            .strip_prefix("custom.")
            .is_some_and(|rest| is_dotted_words(rest, 1))
}

/// Whether `name` names something a query may ask about: a client name or a bus event type
/// (`flashsale.purchased`).
pub fn is_queryable_name(name: &str) -> bool {
    is_client_name(name) || (name.len() <= MAX_NAME_CHARS && is_dotted_words(name, 2))
}

/// Dot-separated words of lower-case letters, digits and '_', each starting with a letter.
pub(crate) fn is_dotted_words(s: &str, min_words: usize) -> bool {
    let mut words = 0;
    for word in s.split('.') {
        let mut bytes = word.bytes();
        let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return false;
        }
        words += 1;
    }
    words >= min_words
}

fn check_id(id: &str) -> Result<(), EventError> {
    if id.is_empty() {
        return Err(EventError::MissingId);
    }
    let ok = id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EventError::BadId(id.to_owned()))
    }
}

fn check_len(field: &'static str, value: &str) -> Result<(), EventError> {
    if value.chars().count() > MAX_FIELD_CHARS {
        Err(EventError::TooLong(field))
    } else {
        Ok(())
    }
}

fn earliest() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A property that names a thing (a product, an order, a page): strings as they are, whole
/// numbers as their decimal text, so `"product_id": 42` and `"product_id": "42"` index alike.
fn indexed(props: &Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    match props.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => {
            check_len(field, s)?;
            Ok(s.clone())
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(other) => Err(EventError::BadIndexedProperty {
            field,
            value: other.to_string(),
        }),
    }
}

fn revenue(props: &Map<String, Value>) -> Result<(i64, String), EventError> {
    let amount = match props.get("revenue") {
        None | Some(Value::Null) => return Ok((0, String::new())),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|v| *v >= 0)
            .ok_or_else(|| EventError::BadRevenue(n.to_string()))?,
        Some(other) => return Err(EventError::BadRevenue(other.to_string())),
    };
    let code = props
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let currency = Currency::parse(code).map_err(|_| EventError::BadCurrency(code.to_owned()))?;
    Ok((amount, currency.to_string()))
}

impl RawEvent {
    /// Checks a client's event; `now` is the server's clock and `max_skew_seconds` how far
    /// ahead of it a client clock may run.
    pub fn check(
        self,
        cell: &str,
        now: DateTime<Utc>,
        max_skew_seconds: u32,
    ) -> Result<Event, EventError> {
        check_id(&self.event_id)?;
        if !is_client_name(&self.name) {
            return Err(EventError::BadName(self.name));
        }
        for (field, value) in [
            ("user_id", &self.user_id),
            ("session_id", &self.session_id),
            ("device", &self.device),
            ("platform", &self.platform),
            ("city", &self.city),
        ] {
            check_len(field, value)?;
        }
        if !(self.country.is_empty()
            || (self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_uppercase())))
        {
            return Err(EventError::BadCountry(self.country));
        }
        let at = self.timestamp.unwrap_or(now);
        let ahead = at - now;
        if ahead > Duration::seconds(i64::from(max_skew_seconds)) {
            return Err(EventError::InFuture {
                at,
                ahead_seconds: ahead.num_seconds(),
                max_seconds: max_skew_seconds,
            });
        }
        if at < earliest() {
            return Err(EventError::TooOld(at));
        }
        let props = &self.properties;
        // A map of JSON values with string keys always serializes.
        let json = serde_json::to_string(props).unwrap_or_else(|_| "{}".to_owned());
        if json.len() > MAX_PROPERTIES_BYTES {
            return Err(EventError::PropertiesTooLarge(json.len()));
        }
        let page = match indexed(props, "page")? {
            page if page.is_empty() => indexed(props, "path")?,
            page => page,
        };
        // The amount is checked and kept in `properties`, but a client is not trusted with
        // money: only bus events (from the service that took the payment) fill the revenue
        // columns, so a buyer posting `purchase` events cannot make revenue up.
        revenue(props)?;
        Ok(Event {
            product_id: indexed(props, "product_id")?,
            order_id: indexed(props, "order_id")?,
            page,
            revenue: 0,
            currency: String::new(),
            event_id: self.event_id,
            name: self.name,
            user_id: self.user_id,
            session_id: self.session_id,
            at,
            properties: json,
            device: self.device,
            platform: self.platform,
            country: self.country,
            city: self.city,
            cell: cell.to_owned(),
            source: Source::Client,
        })
    }
}

impl Event {
    /// A domain event from the bus. Its payload is indexed by the convention of
    /// docs/analytics.md (`user_id`, `order_id`, `product_id`, money `total`); nothing is
    /// refused, since the publishing service already checked it: a field of another shape is
    /// left out of the columns and kept in `properties`.
    pub fn from_envelope(envelope: &Envelope) -> Self {
        let text = |field: &'static str| match &envelope.payload {
            Value::Object(map) => indexed(map, field).unwrap_or_default(),
            _ => String::new(),
        };
        let total = envelope.payload.get("total");
        let revenue = total
            .and_then(|t| t.get("minor_units"))
            .and_then(Value::as_i64)
            .filter(|v| *v >= 0);
        let currency = total
            .and_then(|t| t.get("currency"))
            .and_then(Value::as_str)
            .and_then(|c| Currency::parse(c).ok());
        let (revenue, currency) = match (revenue, currency) {
            (Some(r), Some(c)) => (r, c.to_string()),
            _ => (0, String::new()),
        };
        Self {
            event_id: envelope.id.to_string(),
            name: envelope.kind.clone(),
            user_id: text("user_id"),
            session_id: String::new(),
            at: envelope.occurred_at,
            properties: envelope.payload.to_string(),
            device: String::new(),
            platform: String::new(),
            country: String::new(),
            city: String::new(),
            cell: envelope.cell.clone(),
            product_id: text("product_id"),
            order_id: text("order_id"),
            page: String::new(),
            revenue,
            currency,
            source: Source::Bus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000, 0).expect("valid")
    }

    fn raw(name: &str) -> RawEvent {
        RawEvent {
            event_id: "e-1".into(),
            name: name.into(),
            user_id: "u1".into(),
            ..RawEvent::default()
        }
    }

    fn props(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn standard_and_custom_names_pass() {
        for name in STANDARD_NAMES
            .iter()
            .copied()
            .chain(["custom.signup", "custom.a.b_2"])
        {
            assert!(raw(name).check("c", now(), 300).is_ok(), "{name}");
        }
        for name in [
            "Page_view",
            "custom.",
            "custom",
            "flashsale.purchased",
            "custom.Bad",
            "",
        ] {
            assert_eq!(
                raw(name).check("c", now(), 300),
                Err(EventError::BadName(name.into())),
                "{name}"
            );
        }
        assert!(is_queryable_name("flashsale.purchased"));
        assert!(!is_queryable_name("purchased"));
    }

    #[test]
    fn ids_and_sizes_are_checked() {
        let mut e = raw("click");
        e.event_id = String::new();
        assert_eq!(e.check("c", now(), 300), Err(EventError::MissingId));
        let mut e = raw("click");
        e.event_id = "a b".into();
        assert_eq!(
            e.check("c", now(), 300),
            Err(EventError::BadId("a b".into()))
        );
        let mut e = raw("click");
        e.city = "x".repeat(257);
        assert_eq!(e.check("c", now(), 300), Err(EventError::TooLong("city")));
        let mut e = raw("click");
        e.properties = props(json!({"blob": "y".repeat(MAX_PROPERTIES_BYTES)}));
        assert!(matches!(
            e.check("c", now(), 300),
            Err(EventError::PropertiesTooLarge(_))
        ));
        let mut e = raw("click");
        e.country = "sg".into();
        assert_eq!(
            e.check("c", now(), 300),
            Err(EventError::BadCountry("sg".into()))
        );
    }

    #[test]
    fn timestamps_may_run_ahead_only_by_the_skew() {
        let mut e = raw("click");
        e.timestamp = Some(now() + Duration::seconds(300));
        assert!(e.clone().check("c", now(), 300).is_ok());
        e.timestamp = Some(now() + Duration::seconds(301));
        assert!(matches!(
            e.check("c", now(), 300),
            Err(EventError::InFuture {
                ahead_seconds: 301,
                ..
            })
        ));
        let mut e = raw("click");
        e.timestamp = DateTime::from_timestamp(0, 0);
        assert!(matches!(
            e.check("c", now(), 300),
            Err(EventError::TooOld(_))
        ));
        let e = raw("click").check("c", now(), 300).expect("valid");
        assert_eq!(e.at, now(), "no timestamp = received now");
    }

    #[test]
    fn indexed_properties_are_lifted_out() {
        let mut e = raw("purchase");
        e.properties = props(json!({
            "product_id": 42, "order_id": "o-9", "path": "/cart",
            "revenue": 1999, "currency": "USD", "coupon": "X"
        }));
        let e = e.check("sg-1", now(), 300).expect("valid");
        assert_eq!(
            (e.product_id.as_str(), e.order_id.as_str(), e.page.as_str()),
            ("42", "o-9", "/cart")
        );
        assert_eq!(
            (e.revenue, e.currency.as_str(), e.source),
            (0, "", Source::Client),
            "a client's amount is not revenue"
        );
        assert_eq!(e.cell, "sg-1");
        assert!(e.properties.contains("\"coupon\":\"X\""));
        assert!(
            e.properties.contains("\"revenue\":1999"),
            "the claimed amount is kept, unverified"
        );
    }

    #[test]
    fn revenue_needs_whole_minor_units_and_a_currency() {
        for (p, want) in [
            (
                json!({"revenue": 10.5, "currency": "USD"}),
                EventError::BadRevenue("10.5".into()),
            ),
            (
                json!({"revenue": -1, "currency": "USD"}),
                EventError::BadRevenue("-1".into()),
            ),
            (
                json!({"revenue": "10", "currency": "USD"}),
                EventError::BadRevenue("\"10\"".into()),
            ),
            (
                json!({"revenue": 10}),
                EventError::BadCurrency(String::new()),
            ),
            (
                json!({"revenue": 10, "currency": "usd"}),
                EventError::BadCurrency("usd".into()),
            ),
            (
                json!({"product_id": {"a": 1}}),
                EventError::BadIndexedProperty {
                    field: "product_id",
                    value: "{\"a\":1}".into(),
                },
            ),
        ] {
            let mut e = raw("purchase");
            e.properties = props(p);
            assert_eq!(e.check("c", now(), 300), Err(want));
        }
    }

    #[test]
    fn bus_events_follow_the_payload_convention() {
        let env = Envelope::new(
            "sg-1",
            "flashsale.purchased",
            1,
            &json!({
                "order_id": "7b1d", "sale_id": "s", "product_id": "p-1", "user_id": "u9",
                "quantity": 2, "total": {"minor_units": 2598, "currency": "SGD"}
            }),
        )
        .expect("envelope");
        let e = Event::from_envelope(&env);
        assert_eq!(e.event_id, env.id.to_string());
        assert_eq!(e.name, "flashsale.purchased");
        assert_eq!(
            (
                e.user_id.as_str(),
                e.order_id.as_str(),
                e.product_id.as_str()
            ),
            ("u9", "7b1d", "p-1")
        );
        assert_eq!((e.revenue, e.currency.as_str()), (2598, "SGD"));
        assert_eq!(e.source, Source::Bus);
        let odd = Envelope::new("c", "ping.emitted", 1, &json!({"total": 5})).expect("envelope");
        let e = Event::from_envelope(&odd);
        assert_eq!(
            (e.revenue, e.currency.as_str(), e.user_id.as_str()),
            (0, "", "")
        );
    }
}
