//! A call and its guarded state machine: the statuses, the actions that move them, and who
//! may take each action. Pure; the store runs each transition as one guarded UPDATE whose
//! WHERE clause is [`Action::from_statuses`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::input::InputError;
use uuid::Uuid;

/// SUPPORT, SALES or CONSULTATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallKind {
    Support,
    Sales,
    Consultation,
}

/// VIDEO or AUDIO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Media {
    Video,
    Audio,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// A SUPPORT call waiting in the queue for an agent.
    Initiated,
    Ringing,
    Active,
    Ended,
    Rejected,
    Missed,
    Failed,
}

/// Something that moves a call from one status to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// A callee is known (given at initiation or an agent took it from the queue).
    Ring,
    Answer,
    Reject,
    /// The caller cancels before an answer, or either party hangs up.
    End,
    /// Nobody answered (or took it from the queue) in time: the periodic job's.
    Miss,
    /// A party or the service saw the call break.
    Fail,
}

titan_kit::names!(CallKind { Support => "SUPPORT", Sales => "SALES", Consultation => "CONSULTATION" });
titan_kit::names!(Media { Video => "VIDEO", Audio => "AUDIO" });
titan_kit::names!(Status {
    Initiated => "INITIATED",
    Ringing => "RINGING",
    Active => "ACTIVE",
    Ended => "ENDED",
    Rejected => "REJECTED",
    Missed => "MISSED",
    Failed => "FAILED",
});
titan_kit::names!(Action {
    Ring => "RING",
    Answer => "ANSWER",
    Reject => "REJECT",
    End => "END",
    Miss => "MISS",
    Fail => "FAIL",
});

impl Status {
    /// A final status: nothing moves the call any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Ended | Self::Rejected | Self::Missed | Self::Failed
        )
    }

    /// Whether the parties may exchange signaling frames now.
    pub fn may_signal(self) -> bool {
        matches!(self, Self::Ringing | Self::Active)
    }
}

impl Action {
    /// The statuses this action leaves from; any other is an illegal transition.
    pub fn from_statuses(self) -> &'static [Status] {
        match self {
            Self::Ring => &[Status::Initiated],
            Self::Answer | Self::Reject => &[Status::Ringing],
            Self::End => &[Status::Initiated, Status::Ringing, Status::Active],
            Self::Miss => &[Status::Initiated, Status::Ringing],
            Self::Fail => &[Status::Initiated, Status::Ringing, Status::Active],
        }
    }

    /// The status the action leads to from `from`, or the refusal naming the current status.
    pub fn apply(self, from: Status) -> Result<Status, IllegalTransition> {
        if !self.from_statuses().contains(&from) {
            return Err(IllegalTransition {
                action: self,
                current: from,
            });
        }
        Ok(match self {
            Self::Ring => Status::Ringing,
            Self::Answer => Status::Active,
            Self::Reject => Status::Rejected,
            Self::End => Status::Ended,
            Self::Miss => Status::Missed,
            Self::Fail => Status::Failed,
        })
    }
}

/// An action the call's status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a call that is {current}", action_verb(*action))]
pub struct IllegalTransition {
    pub action: Action,
    pub current: Status,
}

fn action_verb(a: Action) -> &'static str {
    match a {
        Action::Ring => "ring",
        Action::Answer => "answer",
        Action::Reject => "reject",
        Action::End => "end",
        Action::Miss => "miss",
        Action::Fail => "fail",
    }
}

/// Who a user is to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Caller,
    Callee,
}

/// Why a user may not take an action on a call, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("user {user} is not a participant of call {call}")]
    NotAParticipant { user: String, call: Uuid },
    #[error("only the callee of call {call} may answer or reject it")]
    NotTheCallee { call: Uuid },
    #[error("only the caller of call {call} may cancel it before it is answered")]
    NotTheCaller { call: Uuid },
}

/// A call as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: Uuid,
    pub caller_id: String,
    pub callee_id: Option<String>,
    pub kind: CallKind,
    pub media: Media,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub caller_consent_at: Option<DateTime<Utc>>,
    pub callee_consent_at: Option<DateTime<Utc>>,
}

impl Call {
    /// The signaling room: the call's own id (one room per call, two members).
    pub fn room_id(&self) -> String {
        self.id.to_string()
    }

    /// What `user` is to this call, if anything.
    pub fn party(&self, user: &str) -> Option<Party> {
        if self.caller_id == user {
            Some(Party::Caller)
        } else if self.callee_id.as_deref() == Some(user) {
            Some(Party::Callee)
        } else {
            None
        }
    }

    /// The other participant of `party` (none while a queued call has no callee).
    pub fn other(&self, party: Party) -> Option<&str> {
        match party {
            Party::Caller => self.callee_id.as_deref(),
            Party::Callee => Some(&self.caller_id),
        }
    }

    /// Both participants known so far.
    pub fn participants(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.caller_id.as_str()).chain(self.callee_id.as_deref())
    }

    /// Checks that `user` may take `action` on this call (who, not when: [`Action::apply`]
    /// checks the status). Only the callee answers or rejects; the caller alone cancels a
    /// call not answered yet; either party ends an active call or reports a failure.
    pub fn authorize(&self, user: &str, action: Action) -> Result<Party, NotAllowed> {
        let party = self
            .party(user)
            .ok_or_else(|| NotAllowed::NotAParticipant {
                user: user.to_owned(),
                call: self.id,
            })?;
        match (action, party) {
            (Action::Answer | Action::Reject, Party::Caller) => {
                Err(NotAllowed::NotTheCallee { call: self.id })
            }
            (Action::End, Party::Callee) if self.status != Status::Active => {
                Err(NotAllowed::NotTheCaller { call: self.id })
            }
            _ => Ok(party),
        }
    }

    /// Seconds between answer and end, for an ended call that was answered.
    pub fn duration_seconds(&self) -> Option<u64> {
        let (answered, ended) = (self.answered_at?, self.ended_at?);
        u64::try_from((ended - answered).num_seconds()).ok()
    }

    /// Recorded only when the cell allows it and both parties consented.
    pub fn recording(&self, allowed: bool) -> bool {
        allowed && self.caller_consent_at.is_some() && self.callee_consent_at.is_some()
    }
}

/// Why a call ended, as `end_reason` stores it.
pub mod reasons {
    /// The caller hung up before an answer.
    pub const CANCELLED: &str = "CANCELLED";
    /// A party hung up an active call.
    pub const HANGUP: &str = "HANGUP";
    /// The call reached videocall.maxCallSeconds.
    pub const MAX_DURATION: &str = "MAX_DURATION";
    /// Nobody answered within the ringing timeout.
    pub const NO_ANSWER: &str = "NO_ANSWER";
    /// No agent took the queued call within the ringing timeout.
    pub const QUEUE_TIMEOUT: &str = "QUEUE_TIMEOUT";
    pub const REJECTED: &str = "REJECTED";
}

/// The end reason of `action` by the party at `status` (FAIL carries the party's own reason).
pub fn end_reason(action: Action, from: Status) -> Option<&'static str> {
    match (action, from) {
        (Action::End, Status::Active) => Some(reasons::HANGUP),
        (Action::End, _) => Some(reasons::CANCELLED),
        (Action::Reject, _) => Some(reasons::REJECTED),
        (Action::Miss, Status::Initiated) => Some(reasons::QUEUE_TIMEOUT),
        (Action::Miss, _) => Some(reasons::NO_ANSWER),
        (Action::Ring | Action::Answer | Action::Fail, _) => None,
    }
}

/// A new call's type and callee: SALES and CONSULTATION need a callee, a SUPPORT call without
/// one is queued; nobody calls themselves.
pub fn check_callee(caller: &str, kind: CallKind, callee: Option<&str>) -> Result<(), InputError> {
    match callee {
        None if kind != CallKind::Support => Err(InputError::new(
            "callee_id",
            format!("is required for a {kind} call; only SUPPORT calls may wait in the queue"),
        )),
        Some(c) if c == caller => Err(InputError::new("callee_id", "is the caller itself")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn call(status: Status) -> Call {
        Call {
            id: Uuid::nil(),
            caller_id: "ann".into(),
            callee_id: Some("bob".into()),
            kind: CallKind::Support,
            media: Media::Video,
            status,
            created_at: DateTime::UNIX_EPOCH,
            ringing_at: None,
            answered_at: None,
            ended_at: None,
            end_reason: None,
            caller_consent_at: None,
            callee_consent_at: None,
        }
    }

    #[test]
    fn the_happy_path_runs_initiated_ringing_active_ended() {
        let mut s = Status::Initiated;
        for (action, next) in [
            (Action::Ring, Status::Ringing),
            (Action::Answer, Status::Active),
            (Action::End, Status::Ended),
        ] {
            s = action.apply(s).expect("legal");
            assert_eq!(s, next);
        }
    }

    #[test]
    fn an_illegal_transition_names_the_current_status() {
        let e = Action::Answer.apply(Status::Ended).expect_err("illegal");
        assert_eq!(e.to_string(), "cannot answer a call that is ENDED");
        assert_eq!(
            Action::Reject.apply(Status::Active).map_err(|e| e.current),
            Err(Status::Active)
        );
        assert_eq!(
            Action::Miss.apply(Status::Active).map_err(|e| e.current),
            Err(Status::Active)
        );
    }

    #[test]
    fn the_table_is_exactly_the_design() {
        use Action::*;
        use Status::*;
        let legal = [
            (Ring, Initiated, Ringing),
            (Answer, Ringing, Active),
            (Reject, Ringing, Rejected),
            (End, Initiated, Ended),
            (End, Ringing, Ended),
            (End, Active, Ended),
            (Miss, Initiated, Missed),
            (Miss, Ringing, Missed),
            (Fail, Initiated, Failed),
            (Fail, Ringing, Failed),
            (Fail, Active, Failed),
        ];
        for &action in Action::ALL {
            for &from in Status::ALL {
                let expected = legal
                    .iter()
                    .find(|(a, f, _)| *a == action && *f == from)
                    .map(|(_, _, to)| *to);
                assert_eq!(action.apply(from).ok(), expected, "{action} from {from}");
            }
        }
    }

    #[test]
    fn only_the_callee_answers_and_only_the_caller_cancels() {
        let ringing = call(Status::Ringing);
        assert_eq!(ringing.authorize("bob", Action::Answer), Ok(Party::Callee));
        assert_eq!(
            ringing.authorize("ann", Action::Answer),
            Err(NotAllowed::NotTheCallee { call: Uuid::nil() })
        );
        assert_eq!(
            ringing.authorize("ann", Action::Reject),
            Err(NotAllowed::NotTheCallee { call: Uuid::nil() })
        );
        assert_eq!(ringing.authorize("ann", Action::End), Ok(Party::Caller));
        assert_eq!(
            ringing.authorize("bob", Action::End),
            Err(NotAllowed::NotTheCaller { call: Uuid::nil() })
        );
        assert_eq!(
            ringing.authorize("eve", Action::Fail),
            Err(NotAllowed::NotAParticipant {
                user: "eve".into(),
                call: Uuid::nil()
            })
        );
        let active = call(Status::Active);
        assert_eq!(active.authorize("bob", Action::End), Ok(Party::Callee));
        assert_eq!(active.authorize("ann", Action::End), Ok(Party::Caller));
    }

    #[test]
    fn callee_rules() {
        assert_eq!(check_callee("ann", CallKind::Support, None), Ok(()));
        assert_eq!(
            check_callee("ann", CallKind::Sales, None).map_err(|e| e.field),
            Err("callee_id".to_owned())
        );
        assert_eq!(
            check_callee("ann", CallKind::Consultation, Some("ann")).map_err(|e| e.to_string()),
            Err("callee_id: is the caller itself".to_owned())
        );
    }

    #[test]
    fn duration_and_recording() {
        let mut c = call(Status::Ended);
        c.answered_at = Some(DateTime::UNIX_EPOCH);
        c.ended_at = Some(DateTime::UNIX_EPOCH + chrono::Duration::seconds(75));
        assert_eq!(c.duration_seconds(), Some(75));
        c.caller_consent_at = Some(DateTime::UNIX_EPOCH);
        assert!(!c.recording(true));
        c.callee_consent_at = Some(DateTime::UNIX_EPOCH);
        assert!(c.recording(true));
        assert!(!c.recording(false));
    }

    fn any_status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL)
    }

    fn any_action() -> impl Strategy<Value = Action> {
        proptest::sample::select(Action::ALL)
    }

    proptest! {
        /// No sequence of actions leaves a final status, and every legal step lands on a status
        /// that some later action may still leave or that is final.
        #[test]
        fn final_statuses_are_never_left(actions in proptest::collection::vec(any_action(), 0..20)) {
            let mut s = Status::Initiated;
            let mut was_final = false;
            for a in actions {
                match a.apply(s) {
                    Ok(next) => {
                        prop_assert!(!was_final, "{a} left final {s}");
                        s = next;
                    }
                    Err(e) => prop_assert_eq!(e.current, s),
                }
                was_final = s.is_final();
            }
        }

        /// Names read back as written.
        #[test]
        fn names_round_trip(s in any_status(), a in any_action()) {
            prop_assert_eq!(Status::from_name(s.as_str()), Some(s));
            prop_assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
    }
}
