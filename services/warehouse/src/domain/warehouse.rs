//! A warehouse as clients define it: a unique code, a name and address, where it is on the
//! globe (allocation measures from there), its status (only ACTIVE warehouses are allocated
//! from), its capacity in units and its priority among equally near warehouses.

use titan_route::{Haversine, Metric};

use super::InputError;

/// Longest warehouse code, in characters.
pub const MAX_CODE: usize = 16;
/// Longest name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest address, in characters.
pub const MAX_ADDRESS: usize = 500;
/// Largest capacity a warehouse may declare, in units.
pub const MAX_CAPACITY: i64 = 1_000_000_000;
/// Highest priority; a higher number is preferred.
pub const MAX_PRIORITY: i32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarehouseStatus {
    Active,
    Inactive,
    Maintenance,
}

titan_kit::names!(WarehouseStatus {
    Active => "ACTIVE",
    Inactive => "INACTIVE",
    Maintenance => "MAINTENANCE",
});

/// A warehouse code: 2 to [`MAX_CODE`] upper-case letters, digits and hyphens, starting
/// with a letter (`SIN-1`); lower case is accepted and upper-cased, so `sin-1` is `SIN-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarehouseCode(String);

impl WarehouseCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        let code = s.to_ascii_uppercase();
        let n = code.chars().count();
        if !(2..=MAX_CODE).contains(&n) {
            return Err(InputError::new(
                field,
                format!("has {n} characters; a code has 2 to {MAX_CODE}"),
            ));
        }
        if !code.starts_with(|c: char| c.is_ascii_uppercase())
            || !code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(InputError::new(
                field,
                format!("{s:?} must be letters, digits and hyphens, starting with a letter"),
            ));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A point on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

impl Location {
    /// `field.lat` / `field.lng` name the coordinate that is off the globe.
    pub fn parse(field: &str, lat: f64, lng: f64) -> Result<Self, InputError> {
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(InputError::new(
                format!("{field}.lat"),
                format!("is {lat}; a latitude is -90 to 90"),
            ));
        }
        if !(lng.is_finite() && (-180.0..=180.0).contains(&lng)) {
            return Err(InputError::new(
                format!("{field}.lng"),
                format!("is {lng}; a longitude is -180 to 180"),
            ));
        }
        Ok(Self { lat, lng })
    }

    /// Great-circle distance to `other`, in metres (titan-route's haversine).
    pub fn distance_m(&self, other: &Self) -> f64 {
        // Both points were checked on the globe and the speed is positive, so the metric
        // cannot refuse them; NaN would sort last rather than panic.
        Haversine::new(vec![(self.lat, self.lng), (other.lat, other.lng)], 1.0)
            .map_or(f64::NAN, |m| m.distance(0, 1))
    }
}

/// A trimmed, non-empty text of at most `max` characters.
pub fn text(field: &str, s: &str, max: usize) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    let n = t.chars().count();
    if n > max {
        return Err(InputError::new(
            field,
            format!("has {n} characters; at most {max} are allowed"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(InputError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// A warehouse as an admin defines it, checked field by field in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWarehouse {
    pub code: WarehouseCode,
    pub name: String,
    pub address: String,
    pub location: Location,
    pub capacity: i64,
    pub priority: i32,
}

impl NewWarehouse {
    pub fn parse(
        code: &str,
        name: &str,
        address: &str,
        location: (f64, f64),
        capacity: i64,
        priority: i32,
    ) -> Result<Self, InputError> {
        let code = WarehouseCode::parse("code", code)?;
        let name = text("name", name, MAX_NAME)?;
        let address = text("address", address, MAX_ADDRESS)?;
        let location = Location::parse("location", location.0, location.1)?;
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(InputError::new(
                "capacity",
                format!("is {capacity}; it must be 1 to {MAX_CAPACITY} units"),
            ));
        }
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(InputError::new(
                "priority",
                format!("is {priority}; it must be 0 to {MAX_PRIORITY}"),
            ));
        }
        Ok(Self {
            code,
            name,
            address,
            location,
            capacity,
            priority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<NewWarehouse, InputError>) -> String {
        r.expect_err("refused").field
    }

    #[test]
    fn a_warehouse_is_checked_field_by_field() {
        let ok = NewWarehouse::parse("sin-1", " Jurong ", "1 Pioneer Rd", (1.3, 103.7), 5000, 10)
            .expect("valid");
        assert_eq!(ok.code.as_str(), "SIN-1");
        assert_eq!(ok.name, "Jurong");
        assert_eq!(
            field(NewWarehouse::parse("1X", "n", "a", (0.0, 0.0), 1, 0)),
            "code"
        );
        assert_eq!(
            field(NewWarehouse::parse("S", "n", "a", (0.0, 0.0), 1, 0)),
            "code"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN 1", "n", "a", (0.0, 0.0), 1, 0)),
            "code"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "  ", "a", (0.0, 0.0), 1, 0)),
            "name"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "n", "", (0.0, 0.0), 1, 0)),
            "address"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "n", "a", (91.0, 0.0), 1, 0)),
            "location.lat"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "n", "a", (0.0, f64::NAN), 1, 0)),
            "location.lng"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "n", "a", (0.0, 0.0), 0, 0)),
            "capacity"
        );
        assert_eq!(
            field(NewWarehouse::parse("SIN", "n", "a", (0.0, 0.0), 1, 1001)),
            "priority"
        );
    }

    #[test]
    fn distances_are_great_circle() {
        // Singapore to Kuala Lumpur is about 309 km as the crow flies.
        let sin = Location::parse("l", 1.3521, 103.8198).expect("on the globe");
        let kul = Location::parse("l", 3.1390, 101.6869).expect("on the globe");
        let d = sin.distance_m(&kul);
        assert!((308_000.0..311_000.0).contains(&d), "{d}");
        assert_eq!(sin.distance_m(&sin), 0.0);
    }
}
