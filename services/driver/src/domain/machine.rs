//! What the three state machines (driver, delivery, route) share: an action leaves from a
//! fixed set of statuses and leads to one status, and any other starting status is refused
//! with a refusal naming the status the subject is in.

use std::fmt;

/// An action of a state machine.
pub trait Transition: Copy + Eq + fmt::Debug + fmt::Display + 'static {
    /// The statuses of the machine.
    type Status: Copy + Eq + fmt::Debug + fmt::Display + 'static;
    /// What the machine moves (`driver`, `delivery`, `route`), for refusals.
    const SUBJECT: &'static str;

    /// The statuses this action leaves from; the store's guard.
    fn leaves_from(self) -> &'static [Self::Status];

    /// The status the action leads to.
    fn target(self) -> Self::Status;

    /// The status the action leads to from `from`, or the refusal naming `from`.
    fn apply(self, from: Self::Status) -> Result<Self::Status, IllegalTransition<Self>> {
        if self.leaves_from().contains(&from) {
            Ok(self.target())
        } else {
            Err(IllegalTransition {
                action: self,
                current: from,
            })
        }
    }
}

/// An action the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a {} that is {current}", A::SUBJECT)]
pub struct IllegalTransition<A: Transition> {
    pub action: A,
    pub current: A::Status,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Transition;

    /// Checks a machine's table: every action from every status either leads to its target
    /// from a status it leaves from, or is refused naming the status it was tried in.
    pub(crate) fn check_table<A: Transition>(actions: &[A], statuses: &[A::Status]) {
        for &a in actions {
            assert!(!a.leaves_from().is_empty(), "{a} leaves from nowhere");
            for &s in statuses {
                match a.apply(s) {
                    Ok(t) => {
                        assert!(a.leaves_from().contains(&s));
                        assert_eq!(t, a.target());
                    }
                    Err(e) => {
                        assert!(!a.leaves_from().contains(&s));
                        assert_eq!((e.action, e.current), (a, s));
                    }
                }
            }
        }
    }
}
