//! Putting dead letters back into the queue without letting them overwrite anything newer.
use crate::{PgPool, Result, Store, db, store::Replayed};

/// Replays every dead letter, or those of one key. A record older than what PostgreSQL or
/// Redis holds for its key is dropped as superseded instead of queued.
pub async fn replay(store: &Store, pool: &PgPool, id: Option<&str>) -> Result<Replayed> {
    let mut done = Replayed::default();
    for (raw, letter) in store.dead_letters(None).await? {
        if id.is_some_and(|id| id != letter.id) {
            continue;
        }
        let persisted = db::get(pool, &letter.id).await?;
        if persisted.is_some_and(|row| row.version >= letter.version) {
            if store.drop_dead_letter(&raw).await? {
                done.superseded += 1;
            }
            continue;
        }
        match store.requeue(&raw, &letter).await? {
            Some(true) => done.queued += 1,
            Some(false) => done.superseded += 1,
            None => {}
        }
    }
    Ok(done)
}
