//! Drivers: registration (name, E.164 phone, email, vehicle type, capacity) and availability.
//! A new driver is OFF_DUTY; a driver moves between AVAILABLE, ON_BREAK and OFF_DUTY on their
//! own, while ON_DELIVERY is entered only when a route is assigned to an AVAILABLE driver and
//! left only when that route completes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{InputError, Performance, Position, Transition};

/// Longest driver name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most a vehicle may carry, in the unit of delivery sizes.
pub const MAX_CAPACITY: u32 = 100_000;
/// Longest email address (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VehicleType {
    Motorcycle,
    Car,
    Van,
    Truck,
}

/// Where a driver is in their working day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    /// On duty and free: the only status that gets routes and shows in nearby searches.
    Available,
    /// Driving an assigned route.
    OnDelivery,
    OnBreak,
    OffDuty,
}

/// Something that changes a driver's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverAction {
    /// Start a shift, or come back from a break.
    BecomeAvailable,
    TakeBreak,
    GoOffDuty,
    /// The service assigned a route.
    StartRoute,
    /// The route's last delivery settled.
    FinishRoute,
}

titan_kit::names!(VehicleType { Motorcycle => "MOTORCYCLE", Car => "CAR", Van => "VAN", Truck => "TRUCK" });
titan_kit::names!(DriverStatus {
    Available => "AVAILABLE",
    OnDelivery => "ON_DELIVERY",
    OnBreak => "ON_BREAK",
    OffDuty => "OFF_DUTY",
});
titan_kit::names!(DriverAction {
    BecomeAvailable => "BECOME_AVAILABLE",
    TakeBreak => "TAKE_BREAK",
    GoOffDuty => "GO_OFF_DUTY",
    StartRoute => "START_ROUTE",
    FinishRoute => "FINISH_ROUTE",
});

impl DriverStatus {
    /// The status of a driver just registered.
    pub const NEW: Self = Self::OffDuty;

    /// Whether a route may be assigned to the driver, and whether nearby searches list them.
    pub fn gets_routes(self) -> bool {
        self == Self::Available
    }
}

impl DriverAction {
    /// The action a driver asks for by naming the status they want in `field`. ON_DELIVERY
    /// is refused: only a route assignment enters it.
    pub fn requested(field: &'static str, target: DriverStatus) -> Result<Self, InputError> {
        match target {
            DriverStatus::Available => Ok(Self::BecomeAvailable),
            DriverStatus::OnBreak => Ok(Self::TakeBreak),
            DriverStatus::OffDuty => Ok(Self::GoOffDuty),
            DriverStatus::OnDelivery => Err(InputError::new(
                field,
                "ON_DELIVERY is set by assigning a route, not requested",
            )),
        }
    }
}

impl Transition for DriverAction {
    type Status = DriverStatus;
    const SUBJECT: &'static str = "driver";

    fn leaves_from(self) -> &'static [DriverStatus] {
        use DriverStatus::*;
        match self {
            Self::BecomeAvailable => &[OffDuty, OnBreak],
            Self::TakeBreak | Self::StartRoute => &[Available],
            Self::GoOffDuty => &[Available, OnBreak],
            Self::FinishRoute => &[OnDelivery],
        }
    }

    fn target(self) -> DriverStatus {
        match self {
            Self::BecomeAvailable | Self::FinishRoute => DriverStatus::Available,
            Self::TakeBreak => DriverStatus::OnBreak,
            Self::GoOffDuty => DriverStatus::OffDuty,
            Self::StartRoute => DriverStatus::OnDelivery,
        }
    }
}

/// A phone number in E.164: `+`, a country code not starting with 0, 15 digits at most in
/// all. Spaces and hyphens a person types are dropped; nothing else is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err(InputError::new(
                field,
                "must be in E.164 form, starting with + and the country code",
            ));
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::new(field, "must hold only digits after the +"));
        }
        if digits.starts_with('0') {
            return Err(InputError::new(
                field,
                "a country code does not start with 0",
            ));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(InputError::new(
                field,
                format!("has {} digits; E.164 numbers have 8 to 15", digits.len()),
            ));
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address: one `@`, a dot-atom local part of at most 64 bytes and a domain of
/// LDH labels with an alphabetic top-level label, stored with the domain in lower case.
/// Quoted local parts and address literals are refused: no mail system a driver uses needs
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InputError> {
        let bad = |why: &str| Err(InputError::new(field, why.to_owned()));
        if s.is_empty() {
            return bad("is required");
        }
        if s.len() > MAX_EMAIL_BYTES {
            return Err(InputError::new(
                field,
                format!(
                    "has {} bytes; at most {MAX_EMAIL_BYTES} are allowed",
                    s.len()
                ),
            ));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return bad("is not an email address: no @");
        };
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b);
        if local.is_empty()
            || local.len() > 64
            || local
                .split('.')
                .any(|atom| atom.is_empty() || !atom.bytes().all(atext))
        {
            return bad(
                "has a local part that is not 1 to 64 letters, digits or !#$%&'*+/=?^_`{|}~- in dot-separated words",
            );
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let ldh = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let tld_ok = labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
        if labels.len() < 2 || !labels.iter().all(ldh) || !tld_ok {
            return bad(
                "has a domain that is not dot-separated letters, digits and hyphens ending in a top-level name",
            );
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How much a vehicle carries: 1 to [`MAX_CAPACITY`], in the unit of delivery sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capacity(u32);

impl Capacity {
    pub fn parse(field: &str, n: i64) -> Result<Self, InputError> {
        match u32::try_from(n) {
            Ok(c @ 1..=MAX_CAPACITY) => Ok(Self(c)),
            _ => Err(InputError::new(
                field,
                format!("is {n}; it must be 1 to {MAX_CAPACITY}"),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A driver's name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, trimmed.
fn parse_name(field: &'static str, s: &str) -> Result<String, InputError> {
    let name = s.trim();
    if name.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(InputError::new(
            field,
            format!("has {chars} characters; at most {MAX_NAME_CHARS} are allowed"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InputError::new(field, "contains a control character"));
    }
    Ok(name.to_owned())
}

/// A registration request, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub phone: Phone,
    pub email: Email,
    pub vehicle_type: VehicleType,
    pub capacity: Capacity,
}

impl Registration {
    /// Checks the fields in the order the request lists them; the first refusal names its
    /// field.
    pub fn parse(
        name: &str,
        phone: &str,
        email: &str,
        vehicle_type: &str,
        capacity: i64,
    ) -> Result<Self, InputError> {
        Ok(Self {
            name: parse_name("name", name)?,
            phone: Phone::parse("phone", phone)?,
            email: Email::parse("email", email)?,
            vehicle_type: VehicleType::parse("vehicle_type", vehicle_type)?,
            capacity: Capacity::parse("capacity", capacity)?,
        })
    }
}

/// A driver as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub id: Uuid,
    /// The token subject the driver signs in as: they change their own status and report
    /// their own positions.
    pub user_id: String,
    pub name: String,
    pub phone: Phone,
    pub email: Email,
    pub vehicle_type: VehicleType,
    pub capacity: Capacity,
    pub status: DriverStatus,
    /// The latest accepted position, if any.
    pub location: Option<Position>,
    /// Deliveries finished and ratings received.
    pub performance: Performance,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::machine::tests::check_table;

    #[test]
    fn the_table_is_consistent_and_a_new_driver_gets_no_route() {
        check_table(DriverAction::ALL, DriverStatus::ALL);
        assert_eq!(DriverStatus::NEW, DriverStatus::OffDuty);
        assert!(DriverAction::StartRoute.apply(DriverStatus::NEW).is_err());
        assert_eq!(
            DriverAction::StartRoute
                .apply(DriverStatus::OnBreak)
                .map_err(|e| e.to_string()),
            Err("cannot START_ROUTE a driver that is ON_BREAK".into())
        );
        let only: Vec<_> = DriverStatus::ALL
            .iter()
            .filter(|s| s.gets_routes())
            .collect();
        assert_eq!(only, [&DriverStatus::Available]);
    }

    #[test]
    fn a_driver_requests_every_status_but_on_delivery() {
        assert_eq!(
            DriverAction::requested("status", DriverStatus::Available),
            Ok(DriverAction::BecomeAvailable)
        );
        assert_eq!(
            DriverAction::requested("status", DriverStatus::OnBreak),
            Ok(DriverAction::TakeBreak)
        );
        assert_eq!(
            DriverAction::requested("status", DriverStatus::OffDuty),
            Ok(DriverAction::GoOffDuty)
        );
        assert_eq!(
            DriverAction::requested("status", DriverStatus::OnDelivery).map_err(|e| e.field),
            Err("status".into())
        );
        // A driver on a route cannot walk off it: going off duty or on a break is refused.
        for a in [
            DriverAction::TakeBreak,
            DriverAction::GoOffDuty,
            DriverAction::BecomeAvailable,
        ] {
            assert!(a.apply(DriverStatus::OnDelivery).is_err(), "{a}");
        }
    }

    fn action() -> impl Strategy<Value = DriverAction> {
        prop::sample::select(DriverAction::ALL)
    }

    proptest! {
        /// Along any sequence of actions, ON_DELIVERY is entered only by START_ROUTE from
        /// AVAILABLE and left only by FINISH_ROUTE, which leads back to AVAILABLE.
        #[test]
        fn on_delivery_is_entered_and_left_only_by_routes(actions in prop::collection::vec(action(), 0..40)) {
            let mut status = DriverStatus::NEW;
            for a in actions {
                if let Ok(next) = a.apply(status) {
                    if next == DriverStatus::OnDelivery && status != DriverStatus::OnDelivery {
                        prop_assert_eq!((a, status), (DriverAction::StartRoute, DriverStatus::Available));
                    }
                    if status == DriverStatus::OnDelivery {
                        prop_assert_eq!((a, next), (DriverAction::FinishRoute, DriverStatus::Available));
                    }
                    status = next;
                }
            }
        }

        #[test]
        fn e164_numbers_are_accepted_as_typed(cc in 1u32..999, rest in "[0-9]{7,11}") {
            let raw = format!("+{cc} {rest}");
            let phone = Phone::parse("phone", &raw).expect("valid");
            prop_assert_eq!(phone.as_str(), format!("+{cc}{rest}"));
        }
    }

    #[test]
    fn phones_are_checked() {
        assert_eq!(
            Phone::parse("phone", "+65 6123-4567").map(|p| p.0),
            Ok("+6561234567".into())
        );
        for bad in [
            "6561234567",
            "+0123456789",
            "+65 6123 456x",
            "+1234567",
            "+1234567890123456",
            "+",
            "",
        ] {
            assert_eq!(
                Phone::parse("phone", bad).map_err(|e| e.field),
                Err("phone".into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            Phone::parse("phone", "+1234567").map_err(|e| e.to_string()),
            Err("phone: has 7 digits; E.164 numbers have 8 to 15".into())
        );
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(
            Email::parse("email", "Ann.Lee+work@Mail.Example.COM").map(|e| e.0),
            Ok("Ann.Lee+work@mail.example.com".into())
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@example.c0m",
            "ann..lee@example.com",
            ".ann@example.com",
            "ann@-example.com",
            "ann@exa_mple.com",
            "a b@example.com",
            "ann@b@example.com",
        ] {
            assert_eq!(
                Email::parse("email", bad).map_err(|e| e.field),
                Err("email".into()),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse("email", &long).is_err());
        let huge = format!("a@{}.com", "b.".repeat(130));
        assert_eq!(
            Email::parse("email", &huge).map_err(|e| e.to_string()),
            Err("email: has 266 bytes; at most 254 are allowed".into())
        );
    }

    #[test]
    fn a_registration_names_the_first_bad_field() {
        let ok = Registration::parse(" Ann Lee ", "+6561234567", "ann@example.com", "VAN", 800)
            .expect("valid");
        assert_eq!(ok.name, "Ann Lee");
        assert_eq!(ok.vehicle_type, VehicleType::Van);
        assert_eq!(ok.capacity.get(), 800);
        let field = |r: Result<Registration, InputError>| r.map_err(|e| e.field).err();
        assert_eq!(
            field(Registration::parse("", "+6561234567", "a@b.co", "VAN", 1)),
            Some("name".into())
        );
        assert_eq!(
            field(Registration::parse(
                "A",
                "+6561234567",
                "a@b.co",
                "BICYCLE",
                1
            )),
            Some("vehicle_type".into())
        );
        assert_eq!(
            Registration::parse("A", "+6561234567", "a@b.co", "VAN", 0).map_err(|e| e.to_string()),
            Err("capacity: is 0; it must be 1 to 100000".into())
        );
        assert!(Registration::parse("A", "+6561234567", "a@b.co", "VAN", 100_001).is_err());
        assert!(Registration::parse("A", "+6561234567", "a@b.co", "VAN", -1).is_err());
        assert!(Registration::parse("A\u{0}", "+6561234567", "a@b.co", "VAN", 1).is_err());
        assert!(Registration::parse(&"a".repeat(101), "+6561234567", "a@b.co", "VAN", 1).is_err());
        assert_eq!(
            VehicleType::parse("vehicle_type", "bike").map_err(|e| e.to_string()),
            Err("vehicle_type: \"bike\" is not one of MOTORCYCLE, CAR, VAN, TRUCK".into())
        );
    }
}
