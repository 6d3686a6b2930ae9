//! Redis: a multiplexed connection manager (reconnects by itself) paired with the key prefix
//! of this cell (or test), so every key a service builds is namespaced the same way.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::{KitError, config::RedisConfig};

/// A connection and the prefix every key must carry; cheap to clone.
#[derive(Clone)]
pub struct RedisHandle {
    pub conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisHandle {
    pub async fn connect(config: &RedisConfig) -> Result<Self, KitError> {
        let client = redis::Client::open(config.url.expose_secret())
            .map_err(|e| KitError::config("redis.url", e.to_string()))?;
        let conn = Self::manager(&client, Duration::from_secs(2)).await?;
        Ok(Self {
            conn,
            client,
            prefix: config.key_prefix.clone(),
        })
    }

    /// A connection of its own, for blocking commands that would stall the shared one; its
    /// response timeout must outlast the block.
    pub async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> Result<ConnectionManager, KitError> {
        Self::manager(&self.client, response_timeout).await
    }

    async fn manager(
        client: &redis::Client,
        response_timeout: Duration,
    ) -> Result<ConnectionManager, KitError> {
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
        Ok(ConnectionManager::new_with_config(client.clone(), config).await?)
    }

    /// A pub/sub connection of its own (`kit::realtime`'s hub holds one per replica).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, KitError> {
        Ok(self.client.get_async_pubsub().await?)
    }

    /// `<prefix><name>`: the only way a service should name a key.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Readiness: the server answers PING.
    pub async fn ping(&self) -> Result<(), KitError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
