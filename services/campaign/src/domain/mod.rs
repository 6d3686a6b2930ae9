//! Campaign rules, pure: campaigns with their channel, lifecycle, caps, quiet hours, schedule
//! and budget; templates checked when a campaign is saved; segment rules compiled into one
//! ClickHouse query with every value bound; event triggers; A/B variants; contacts;
//! signed links; bounces by Message-ID; attribution and ROI.
//! No I/O.

pub mod attribution;
pub mod bounce;
pub mod campaign;
pub mod contact;
pub mod links;
pub mod segment;
pub mod template;
pub mod trigger;
pub mod variants;

pub use attribution::{Model, Purchase, Touch, attributed, roi};
pub use bounce::Bounce;
pub use campaign::{
    Campaign, CampaignId, Caps, Channel, NewCampaign, QuietHours, Schedule, Status, Transition,
};
pub use contact::Contact;
pub use links::{LinkKind, LinkSigner, Linked};
pub use segment::{Rule, Segment, SegmentQuery};
pub use template::{Personal, Rendered, Template};
pub use titan_kit::input::InputError;
pub use trigger::Trigger;
pub use variants::{Variant, Variants};

/// The service's name: its migrations, its config section, its consumer group.
pub const SERVICE: &str = "campaign";
