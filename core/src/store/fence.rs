//! Versions PostgreSQL issued without Redis, applied to Redis so that it neither serves nor
//! versions a key as if those writes had not happened.
use std::time::Duration;

use super::{Store, keys};
use crate::Result;

impl Store {
    /// Raises the key's last issued version to at least `version` and stops serving a cached
    /// value older than it (see `fence.lua`). Idempotent, so applying it twice is harmless.
    pub async fn fence(&self, id: &str, version: i64, clean_ttl: Duration) -> Result<()> {
        let _: i64 = self
            .scripts
            .fence
            .key(keys::product(id))
            .arg(version)
            .arg(clean_ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
