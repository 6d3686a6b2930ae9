//! ClickHouse: an HTTP client on the cell's database. Row validation is a setting because the
//! server Debian ships (18.16) does not know the format it uses.

use clickhouse::Client;
use secrecy::ExposeSecret;

use crate::{KitError, config::ClickHouseConfig};

pub fn connect(config: &ClickHouseConfig) -> Client {
    let mut client = Client::default()
        .with_url(&config.url)
        .with_database(&config.database)
        .with_validation(config.validation);
    if let Some(user) = &config.user {
        client = client.with_user(user);
    }
    if let Some(password) = &config.password {
        client = client.with_password(password.expose_secret());
    }
    client
}

/// Readiness: the server answers a query.
pub async fn ping(client: &Client) -> Result<(), KitError> {
    client.query("SELECT 1").fetch_one::<u8>().await?;
    Ok(())
}
