//! Event triggers: a TRIGGERED campaign sends to the user named by a bus event, `delay_hours`
//! after it, unless a cancelling event of the same user arrives first (the abandoned cart:
//! `cart.updated` starts it, a purchase cancels it). The audience is whoever triggers it, so
//! a triggered campaign has no segment.

use titan_kit::input::InputError;

use super::campaign::cut;

/// The bus events a trigger may name: each carries the user it is about in `user_id`.
/// `cart.updated` is the contract expected from a cart service (stream `cart`, payload
/// `{"user_id": ...}`); no service of this repository publishes it yet.
pub const EVENTS: [&str; 3] = [
    "flashsale.purchased",
    "livestream.purchased",
    "cart.updated",
];
/// The services whose streams carry [`EVENTS`], one consumer each.
pub const SOURCES: [&str; 3] = ["flashsale", "livestream", "cart"];
/// The longest delay: a month.
pub const MAX_DELAY_HOURS: u32 = 720;

/// What starts a triggered campaign's message to a user, and what cancels it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The event kind that starts a message to its `user_id`.
    pub event: String,
    /// How long after the event the message is due (0 = at once).
    pub delay_hours: u32,
    /// An event kind of the same user that cancels the messages it started before it and
    /// not yet sent; `None` = nothing cancels.
    pub cancel_event: Option<String>,
}

fn known(field: &str, kind: &str) -> Result<String, InputError> {
    EVENTS
        .iter()
        .find(|k| **k == kind)
        .map(|k| (*k).to_owned())
        .ok_or_else(|| {
            InputError::new(
                field,
                format!("{:?} is not one of {}", cut(kind), EVENTS.join(", ")),
            )
        })
}

impl Trigger {
    pub fn new(event: &str, delay_hours: u32, cancel_event: &str) -> Result<Self, InputError> {
        let event = known("trigger.event", event)?;
        if delay_hours > MAX_DELAY_HOURS {
            return Err(InputError::new(
                "trigger.delay_hours",
                format!("{delay_hours} is above {MAX_DELAY_HOURS}"),
            ));
        }
        let cancel_event = if cancel_event.is_empty() {
            None
        } else {
            let cancel = known("trigger.cancel_event", cancel_event)?;
            if cancel == event {
                return Err(InputError::new(
                    "trigger.cancel_event",
                    "must differ from trigger.event",
                ));
            }
            if delay_hours == 0 {
                return Err(InputError::new(
                    "trigger.cancel_event",
                    "needs delay_hours above 0 (a message due at once has nothing to wait for)",
                ));
            }
            Some(cancel)
        };
        Ok(Self {
            event,
            delay_hours,
            cancel_event,
        })
    }

    /// The event kind that cancels, or `""`.
    pub fn cancel_source(&self) -> &str {
        self.cancel_event.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_names_known_events_and_a_cancel_only_with_a_delay() {
        let t = Trigger::new("cart.updated", 4, "flashsale.purchased").expect("valid");
        assert_eq!(t.cancel_event.as_deref(), Some("flashsale.purchased"));
        assert_eq!(
            Trigger::new("flashsale.purchased", 0, "")
                .expect("valid")
                .cancel_source(),
            ""
        );
        for (event, delay, cancel, field) in [
            ("cart.emptied", 1, "", "trigger.event"),
            ("cart.updated", 721, "", "trigger.delay_hours"),
            ("cart.updated", 1, "cart.updated", "trigger.cancel_event"),
            (
                "cart.updated",
                0,
                "flashsale.purchased",
                "trigger.cancel_event",
            ),
            (
                "cart.updated",
                1,
                "chat.message_sent",
                "trigger.cancel_event",
            ),
        ] {
            assert_eq!(
                Trigger::new(event, delay, cancel).map_err(|e| e.field),
                Err(field.to_owned()),
                "{event} {delay} {cancel}"
            );
        }
    }

    #[test]
    fn every_event_has_its_source_stream() {
        for kind in EVENTS {
            let source = kind.split('.').next().expect("dotted");
            assert!(SOURCES.contains(&source), "{kind}");
        }
    }
}
