//! ClickHouse: segment members from the analytics service's `analytics_events`
//! (docs/analytics.md is the contract), by the query the segment compiles to, with every
//! value bound.

use clickhouse::Client;

use crate::{
    app::{Audience, Result},
    domain::{SegmentQuery, segment::Bind},
};

#[derive(Debug, Clone)]
pub struct ChAudience {
    client: Client,
}

impl ChAudience {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Audience for ChAudience {
    async fn members(&self, q: &SegmentQuery) -> Result<Vec<String>> {
        let mut query = self.client.query(&q.sql);
        for bind in &q.binds {
            query = match bind {
                Bind::Text(s) => query.bind(s.as_str()),
                Bind::Texts(v) => query.bind(v.as_slice()),
                Bind::Time(t) => query.bind(*t),
                Bind::Count(n) => query.bind(*n),
            };
        }
        Ok(query.fetch_all::<String>().await?)
    }
}
