//! A stream and its status machine: SCHEDULED → LIVE (the RTMP server admitted its key) →
//! ENDED (the publisher stopped), and SCHEDULED → CANCELLED by its seller. Only a SCHEDULED
//! stream is edited or gets a new key; a stream leaves LIVE once, so a second publisher on a
//! LIVE key is refused and an ENDED stream never goes live again.

use chrono::{DateTime, Utc};

use super::{ProductIds, StreamId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Scheduled,
    Live,
    Ended,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Live => "LIVE",
            Self::Ended => "ENDED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SCHEDULED" => Self::Scheduled,
            "LIVE" => Self::Live,
            "ENDED" => Self::Ended,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the stream's key may still admit a publisher (it is revoked past LIVE).
    pub fn key_active(self) -> bool {
        matches!(self, Self::Scheduled | Self::Live)
    }
}

/// What may happen to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The RTMP server admitted a publisher.
    GoLive,
    /// The publisher stopped.
    End,
    /// The seller called it off.
    Cancel,
    /// The seller edited it or rotated its key.
    Edit,
    /// The seller featured products (while LIVE).
    Feature,
    /// A purchase was made in it (once it started).
    Sell,
    /// The recorder stored its recording (once it started).
    Record,
    /// A viewer watched, liked or shared it (while LIVE).
    Watch,
    /// A viewer commented (while LIVE).
    Comment,
}

impl Transition {
    fn as_str(self) -> &'static str {
        match self {
            Self::GoLive => "go live",
            Self::End => "end",
            Self::Cancel => "be cancelled",
            Self::Edit => "be edited",
            Self::Feature => "feature products",
            Self::Sell => "take purchases",
            Self::Record => "get a recording",
            Self::Watch => "be watched",
            Self::Comment => "take comments",
        }
    }
}

/// A transition the stream's status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} is {} and cannot {}", .status.as_str(), .transition.as_str())]
pub struct WrongStatus {
    pub stream: StreamId,
    pub status: Status,
    pub transition: Transition,
}

/// What a transition leads to: `Ok(Some(next))` changes the status, `Ok(None)` is a repeat
/// that changes nothing (cancelling a cancelled stream), `Err` is refused.
pub fn next(
    stream: StreamId,
    status: Status,
    transition: Transition,
) -> Result<Option<Status>, WrongStatus> {
    use {Status::*, Transition::*};
    match (status, transition) {
        (Scheduled, GoLive) => Ok(Some(Live)),
        (Live, End) => Ok(Some(Ended)),
        // nginx may report the end twice (a retried callback): the second changes nothing.
        (Ended, End) => Ok(None),
        (Scheduled, Cancel) => Ok(Some(Cancelled)),
        (Cancelled, Cancel) => Ok(None),
        (Scheduled, Edit) => Ok(Some(Scheduled)),
        (Live, Feature | Watch | Comment) => Ok(Some(Live)),
        (Live | Ended, Sell | Record) => Ok(Some(status)),
        _ => Err(WrongStatus {
            stream,
            status,
            transition,
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub id: StreamId,
    pub seller_id: String,
    pub title: String,
    pub status: Status,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub recording_url: Option<String>,
    pub featured: ProductIds,
}

impl Stream {
    /// The HLS playlist of a LIVE stream under `base` (nginx writes `<name>.m3u8`, and the
    /// publish callback renames the stream to its id, so the secret key never reaches a URL).
    pub fn hls_url(&self, base: Option<&str>) -> Option<String> {
        let base = base?;
        (self.status == Status::Live)
            .then(|| format!("{}/{}.m3u8", base.trim_end_matches('/'), self.id))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALL: [Status; 4] = [
        Status::Scheduled,
        Status::Live,
        Status::Ended,
        Status::Cancelled,
    ];
    const MOVES: [Transition; 9] = [
        Transition::Watch,
        Transition::Comment,
        Transition::GoLive,
        Transition::End,
        Transition::Cancel,
        Transition::Edit,
        Transition::Feature,
        Transition::Sell,
        Transition::Record,
    ];

    #[test]
    fn the_seed_lifecycle() {
        let id = StreamId::generate();
        assert_eq!(
            next(id, Status::Scheduled, Transition::GoLive),
            Ok(Some(Status::Live))
        );
        assert_eq!(
            next(id, Status::Live, Transition::End),
            Ok(Some(Status::Ended))
        );
        assert_eq!(
            next(id, Status::Scheduled, Transition::Cancel),
            Ok(Some(Status::Cancelled))
        );
        assert_eq!(next(id, Status::Cancelled, Transition::Cancel), Ok(None));
        assert_eq!(next(id, Status::Ended, Transition::End), Ok(None));
        assert!(next(id, Status::Scheduled, Transition::End).is_err());
        let refused = next(id, Status::Live, Transition::GoLive).expect_err("refused");
        assert_eq!(
            refused.to_string(),
            format!("stream {id} is LIVE and cannot go live")
        );
        assert!(next(id, Status::Ended, Transition::GoLive).is_err());
        assert!(next(id, Status::Cancelled, Transition::GoLive).is_err());
        assert!(next(id, Status::Live, Transition::Cancel).is_err());
        assert!(next(id, Status::Live, Transition::Edit).is_err());
        assert_eq!(
            next(id, Status::Live, Transition::Feature),
            Ok(Some(Status::Live))
        );
        assert!(next(id, Status::Ended, Transition::Feature).is_err());
        assert_eq!(
            next(id, Status::Ended, Transition::Sell),
            Ok(Some(Status::Ended))
        );
        assert!(next(id, Status::Scheduled, Transition::Sell).is_err());
        assert!(next(id, Status::Cancelled, Transition::Record).is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for s in ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("live"), None);
    }

    #[test]
    fn playback_only_while_live() {
        let mut s = Stream {
            id: StreamId::generate(),
            seller_id: "s1".into(),
            title: "t".into(),
            status: Status::Live,
            scheduled_at: Utc::now(),
            started_at: None,
            ended_at: None,
            recording_url: None,
            featured: ProductIds::default(),
        };
        assert_eq!(
            s.hls_url(Some("http://media.example/hls/")),
            Some(format!("http://media.example/hls/{}.m3u8", s.id))
        );
        assert_eq!(s.hls_url(None), None);
        s.status = Status::Ended;
        assert_eq!(s.hls_url(Some("http://media.example/hls")), None);
    }

    proptest! {
        /// Whatever happens, a stream that left LIVE or was cancelled never goes live again,
        /// and the key is active exactly while SCHEDULED or LIVE.
        #[test]
        fn no_way_back_to_live(moves in proptest::collection::vec(0usize..9, 0..20)) {
            let id = StreamId::generate();
            let mut status = Status::Scheduled;
            let mut was_live = false;
            for m in moves {
                if let Ok(Some(n)) = next(id, status, MOVES[m]) {
                    if n == Status::Live && status != Status::Live {
                        prop_assert!(!was_live);
                        was_live = true;
                    }
                    status = n;
                }
                prop_assert_eq!(status.key_active(), matches!(status, Status::Scheduled | Status::Live));
                if was_live {
                    prop_assert_ne!(status, Status::Scheduled);
                }
            }
        }
    }
}
