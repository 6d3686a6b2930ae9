//! A fixed number of calls with a bounded number in flight: each call's outcome, its latency
//! and the completions per second, for the load generators that measure one RPC at a time
//! (coupon, gamification) and the suite's throughput-over-time plots.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};

use crate::Latencies;

/// What [`calls`] measured.
#[derive(Debug)]
pub struct Run<T> {
    /// Call `i`'s answer at index `i`.
    pub answers: Vec<Result<T, tonic::Status>>,
    /// Sorted, in µs.
    pub latencies: Latencies,
    /// Calls completed in each second since the first was sent.
    pub per_second: Vec<u64>,
    pub elapsed: Duration,
}

/// Runs `call(0..n)` with at most `in_flight` at once.
pub async fn calls<T, F, Fut>(n: usize, in_flight: usize, call: F) -> Run<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let mut done: Vec<(usize, Result<T, tonic::Status>, u32, Duration)> = stream::iter(0..n)
        .map(|i| {
            let call = call(i);
            async move {
                let sent = Instant::now();
                let answer = call.await;
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                (i, answer, micros, started.elapsed())
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<u32> = done.iter().map(|d| d.2).collect();
    latencies.sort_unstable();
    let per_second = per_second(done.iter().map(|d| d.3), elapsed);
    done.sort_unstable_by_key(|d| d.0);
    Run {
        answers: done.into_iter().map(|d| d.1).collect(),
        latencies: Latencies(latencies),
        per_second,
        elapsed,
    }
}

/// Counts completion instants (offsets from the start) per whole second of `elapsed`.
pub fn per_second(at: impl Iterator<Item = Duration>, elapsed: Duration) -> Vec<u64> {
    let mut counts = vec![0u64; elapsed.as_secs() as usize + 1];
    for t in at {
        let s = (t.as_secs() as usize).min(counts.len() - 1);
        counts[s] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_counted_in_their_second() {
        let at = [0, 999, 1_000, 2_500, 2_999].map(Duration::from_millis);
        assert_eq!(
            per_second(at.into_iter(), Duration::from_millis(2_999)),
            [2, 1, 2]
        );
    }

    #[tokio::test]
    async fn answers_come_back_in_call_order() {
        let run = calls(50, 7, |i| async move {
            if i % 10 == 3 {
                Err(tonic::Status::not_found(i.to_string()))
            } else {
                Ok(i * 2)
            }
        })
        .await;
        assert_eq!(run.answers.len(), 50);
        for (i, a) in run.answers.iter().enumerate() {
            match a {
                Ok(v) => assert_eq!(*v, i * 2),
                Err(s) => assert_eq!((i % 10, s.message()), (3, i.to_string().as_str())),
            }
        }
        assert_eq!(run.latencies.0.len(), 50);
        assert_eq!(run.per_second.iter().sum::<u64>(), 50);
    }
}
