//! Deleting a person from the bus: the entries of a service's stream that name them and that
//! every consumer group is done with, and the dead letters of its groups that name them. An
//! entry a group has not handled yet stays: deleting it would lose the change for that group.

use redis::{AsyncCommands, Value};

use super::{
    dead_letter_key,
    positions::{StreamId, positions},
    stream_key,
};
use crate::{
    KitError,
    datastores::redis::{RedisConn, RedisHandle},
};

/// Entries read per round trip.
const PAGE: usize = 1000;

/// Deletes the entries of `service`'s stream and of its groups' dead-letter streams whose
/// fields hold `value` as a JSON string (`"<value>"`, so `ann` does not match `joanna`), and
/// returns how many. Reads the stream once up to the first entry some group still needs:
/// bounded by the stream's length, which the relay trims.
pub async fn forget(redis: &RedisHandle, service: &str, value: &str) -> Result<u64, KitError> {
    let needle = serde_json::to_string(value)
        .map_err(|e| KitError::Other(format!("cannot quote a value to forget: {e}")))?;
    let stream = stream_key(redis, service);
    let mut conn = redis.conn.clone();
    let exists: bool = conn.exists(&stream).await?;
    if !exists {
        return Ok(0);
    }
    let groups = positions(&mut conn, &stream).await?;
    let mut forgotten = forget_in(&mut conn, &stream, &needle, |id| {
        groups.iter().all(|g| g.done_with(id))
    })
    .await?;
    for group in &groups {
        let dead = dead_letter_key(redis, service, &group.group);
        forgotten += forget_in(&mut conn, &dead, &needle, |_| true).await?;
    }
    Ok(forgotten)
}

/// Deletes the entries of `stream` that mention `needle`, page by page from the oldest, up to
/// the first entry that `done` says is still needed (ids only grow, so every later one is too).
async fn forget_in(
    conn: &mut RedisConn,
    stream: &str,
    needle: &str,
    done: impl Fn(StreamId) -> bool,
) -> Result<u64, KitError> {
    let mut forgotten = 0;
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, Vec<(String, Value)>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let Some((last, _)) = page.last() else {
            return Ok(forgotten);
        };
        start = format!("({last}");
        let full = page.len() == PAGE;
        let mut doomed = Vec::new();
        let mut needed = false;
        for (id, fields) in &page {
            if StreamId::parse(id).is_none_or(|id| !done(id)) {
                needed = true;
                break;
            }
            if mentions(fields, needle) {
                doomed.push(id.clone());
            }
        }
        if !doomed.is_empty() {
            let n: u64 = conn.xdel(stream, &doomed).await?;
            forgotten += n;
        }
        if needed || !full {
            return Ok(forgotten);
        }
    }
}

fn mentions(fields: &[(String, Value)], needle: &str) -> bool {
    fields.iter().any(|(_, value)| {
        redis::from_redis_value_ref::<String>(value).is_ok_and(|text| text.contains(needle))
    })
}
