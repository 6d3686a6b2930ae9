//! `kubectl titan wait`: what is waited for (`ready`, `version=X`), whether a cell is there yet
//! and, while it is not, one line saying where it stands; plus the `--timeout` syntax.

use std::{str::FromStr, time::Duration};

use kube::ResourceExt;
use titan_crds::Cell;

use crate::status::{CellRow, Phase};

/// What `--for` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `ready`: every enabled service ready on the latest spec.
    Ready,
    /// `version=X`: ready, every service running release X.
    Version(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            None if s == "ready" => Ok(Target::Ready),
            Some(("version", v)) if !v.is_empty() => Ok(Target::Version(v.to_string())),
            _ => Err(format!("--for takes ready or version=<version>, not {s:?}")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Ready => write!(f, "Ready"),
            Target::Version(v) => write!(f, "Ready at version {v}"),
        }
    }
}

/// Where a cell stands against a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Reached: what to say.
    Done(String),
    /// Not yet: one line saying where it stands.
    Waiting(String),
}

/// Whether `cell` reached `target`.
pub fn check(cell: &Cell, target: &Target) -> Progress {
    let row = CellRow::of(cell);
    let version_ok = match target {
        Target::Ready => true,
        Target::Version(v) => row.version.as_deref() == Some(v.as_str()),
    };
    if row.phase == Phase::Ready && version_ok {
        return Progress::Done(format!(
            "cell {} is {target}: {} services ready",
            cell.name_any(),
            row.services
        ));
    }
    let running = row.version.as_deref().unwrap_or("mixed");
    let mut line = format!(
        "{} ({}): {} services ready, version {running}",
        row.phase.as_str(),
        row.reason,
        row.services
    );
    if let Target::Version(v) = target
        && row.wanted_version != *v
    {
        line.push_str(&format!(
            "; the spec asks for {}, not {v}",
            row.wanted_version
        ));
    }
    Progress::Waiting(line)
}

/// A timeout as kubectl writes it: `90s`, `5m`, `1h30m`, or a bare number of seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let invalid = || format!("--timeout takes a duration such as 90s, 5m or 1h30m, not {text:?}");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let n: u64 = number.parse().map_err(|_| invalid())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn targets_parse_and_refuse_with_the_flag_named() {
        assert_eq!("ready".parse(), Ok(Target::Ready));
        assert_eq!(
            "version=0.2.0".parse(),
            Ok(Target::Version("0.2.0".to_string()))
        );
        assert_eq!(
            "version=".parse::<Target>(),
            Err("--for takes ready or version=<version>, not \"version=\"".to_string())
        );
        assert!("condition=Ready".parse::<Target>().is_err());
    }

    #[test]
    fn timeouts_parse_like_kubectls() {
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "m", "5x", "5m3", "-1s"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_degraded_cell_waits_and_says_why() {
        let cell = fixtures::cell();
        assert_eq!(
            check(&cell, &Target::Ready),
            Progress::Waiting(
                "Degraded (ServiceDegraded): 12/14 services ready, version mixed".to_string()
            )
        );
        assert_eq!(
            check(&cell, &Target::Version("0.3.0".to_string())),
            Progress::Waiting(
                "Degraded (ServiceDegraded): 12/14 services ready, version mixed; the spec asks for 0.2.0, not 0.3.0".to_string()
            )
        );
    }

    #[test]
    fn a_ready_cell_is_done_only_at_the_version_waited_for() {
        let cell = fixtures::ready_cell();
        assert_eq!(
            check(&cell, &Target::Ready),
            Progress::Done("cell dev is Ready: 14/14 services ready".to_string())
        );
        assert!(matches!(
            check(&cell, &Target::Version("0.2.0".to_string())),
            Progress::Waiting(_)
        ));
    }
}
