//! In-memory stores: the embedded default of `wsctl dev`. The key store can persist its
//! records (hashes only) to a JSON file so local keys survive a restart.

use super::*;
use crate::ratelimit::TokenBucket;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

const STORE: &str = "in-memory store";

fn poisoned() -> StoreError {
    StoreError::corrupt(STORE, "a previous operation panicked while holding the lock")
}

#[derive(Default)]
struct Room {
    members: HashSet<ConnId>,
    seq: u64,
    history: VecDeque<(u64, Frame)>,
    /// Bytes of the frames in `history`.
    history_bytes: usize,
    last_publish_ms: Option<u64>,
    /// The key whose publish gave the room its first message, while it counts against it.
    creator: Option<String>,
}

impl Room {
    fn info(&self, name: &str) -> RoomInfo {
        RoomInfo {
            room: name.to_owned(),
            subscribers: self.members.len() as u64,
            seq: self.seq,
            last_publish_ms: self.last_publish_ms,
        }
    }
}

#[derive(Default)]
struct Rooms {
    rooms: BTreeMap<String, Room>,
    by_conn: HashMap<ConnId, BTreeSet<String>>,
    /// Live-connection slots per key: connection → expiry (epoch ms).
    slots: HashMap<String, HashMap<String, u64>>,
    /// Rate-limit buckets by name; full (idle) ones are dropped as the map grows.
    buckets: HashMap<String, TokenBucket>,
    /// Bucket count after the last sweep of idle buckets.
    buckets_swept_at: usize,
    /// Rooms each key created that still count against it (see `Limits::max_rooms_per_key`).
    created_by: HashMap<String, HashSet<String>>,
    /// History bytes across all rooms.
    history_bytes: usize,
    /// Messages across all histories.
    history_messages: usize,
    /// Every stored message as (room, seq), in publish order: the eviction order of the
    /// gateway-wide bound. Entries of messages already trimmed are skipped when met and
    /// swept when they outnumber the stored messages.
    evict_order: VecDeque<(String, u64)>,
    /// Messages met in `evict_order` while they were their room's only one: evicted
    /// (oldest first) only once no other message is left to evict.
    evict_last: VecDeque<(String, u64)>,
}

impl Rooms {
    /// Drops a room's oldest message, releasing the room from its creator's count when its
    /// history is gone and forgetting the room when nobody is subscribed either.
    fn drop_oldest(&mut self, name: &str) {
        let Some(r) = self.rooms.get_mut(name) else { return };
        let Some((_, frame)) = r.history.pop_front() else { return };
        r.history_bytes -= frame.as_str().len();
        self.history_bytes -= frame.as_str().len();
        self.history_messages -= 1;
        if !r.history.is_empty() {
            return;
        }
        if let Some(key) = r.creator.take() {
            if let Some(set) = self.created_by.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.created_by.remove(&key);
                }
            }
        }
        if r.members.is_empty() {
            self.rooms.remove(name);
        }
    }

    /// Whether `(name, seq)` is still in its room's history.
    fn holds(&self, name: &str, seq: u64) -> bool {
        self.rooms.get(name).is_some_and(|r| {
            matches!((r.history.front(), r.history.back()), (Some((lo, _)), Some((hi, _))) if *lo <= seq && seq <= *hi)
        })
    }

    /// Evicts the oldest messages across rooms until the total fits in `cap`: first those
    /// that are not their room's newest, then (only if that is not enough) the newest ones
    /// of the rooms published to longest ago.
    fn evict_to(&mut self, cap: usize) {
        while self.history_bytes > cap {
            let (entry, last_resort) = match self.evict_order.pop_front() {
                Some(e) => (e, false),
                None => match self.evict_last.pop_front() {
                    Some(e) => (e, true),
                    None => break,
                },
            };
            if !self.holds(&entry.0, entry.1) {
                continue;
            }
            if !last_resort && self.rooms.get(&entry.0).is_some_and(|r| r.history.len() == 1) {
                self.evict_last.push_back(entry);
                continue;
            }
            self.drop_oldest(&entry.0);
        }
        if self.evict_order.len() + self.evict_last.len() > 2 * self.history_messages + 1024 {
            let (order, last) = (std::mem::take(&mut self.evict_order), std::mem::take(&mut self.evict_last));
            self.evict_order = order.into_iter().filter(|(n, s)| self.holds(n, *s)).collect();
            self.evict_last = last.into_iter().filter(|(n, s)| self.holds(n, *s)).collect();
        }
    }
}

/// Rooms, membership and history in process memory. Every operation takes one short lock
/// and never awaits while holding it.
pub struct MemoryRoomStore {
    history: usize,
    inner: Mutex<Rooms>,
}

impl MemoryRoomStore {
    /// A store keeping `history` messages per room.
    pub fn new(history: usize) -> Self {
        MemoryRoomStore { history, inner: Mutex::new(Rooms::default()) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Rooms>, StoreError> {
        self.inner.lock().map_err(|_| poisoned())
    }
}

/// Builds the subscribe answer from a room's seq and history.
pub(crate) fn subscription_from(seq: u64, history: &[(u64, Frame)], since: Option<u64>) -> Subscription {
    match since {
        None => Subscription { seq, latest: history.last().map(|(_, f)| f.clone()), replay: vec![], truncated: false },
        Some(since) => {
            let replay: Vec<Frame> = history.iter().filter(|(s, _)| *s > since).map(|(_, f)| f.clone()).collect();
            let oldest = history.first().map_or(seq + 1, |(s, _)| *s);
            let truncated = since < seq && oldest > since + 1;
            Subscription { seq, latest: None, replay, truncated }
        }
    }
}

#[async_trait]
impl RoomStore for MemoryRoomStore {
    async fn subscribe(
        &self,
        conn: &str,
        room: &RoomName,
        since: Option<u64>,
        max_rooms: usize,
    ) -> Result<Subscription, SubscribeError> {
        let mut g = self.lock()?;
        let Rooms { rooms, by_conn, .. } = &mut *g;
        let id: ConnId = match by_conn.get_key_value(conn) {
            Some((k, _)) => k.clone(),
            None => Arc::from(conn),
        };
        let mine = by_conn.entry(id.clone()).or_default();
        if !mine.contains(room.as_str()) && mine.len() >= max_rooms {
            let n = mine.len();
            if mine.is_empty() {
                by_conn.remove(conn);
            }
            return Err(SubscribeError::TooManyRooms(n));
        }
        mine.insert(room.as_str().to_owned());
        let r = rooms.entry(room.as_str().to_owned()).or_default();
        r.members.insert(id);
        let history: Vec<(u64, Frame)> = r.history.iter().cloned().collect();
        Ok(subscription_from(r.seq, &history, since))
    }

    async fn unsubscribe(&self, conn: &str, room: &RoomName) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let Rooms { rooms, by_conn, .. } = &mut *g;
        let was = by_conn.get_mut(conn).is_some_and(|set| set.remove(room.as_str()));
        if by_conn.get(conn).is_some_and(BTreeSet::is_empty) {
            by_conn.remove(conn);
        }
        let mut left = false;
        if let Some(r) = rooms.get_mut(room.as_str()) {
            left = r.members.remove(conn);
            if r.members.is_empty() && r.history.is_empty() {
                rooms.remove(room.as_str());
            }
        }
        Ok(was || left)
    }

    async fn rooms_of(&self, conn: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.lock()?.by_conn.get(conn).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn remove_connection(&self, conn: &str) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock()?;
        let Rooms { rooms, by_conn, .. } = &mut *g;
        let Some(mine) = by_conn.remove(conn) else { return Ok(vec![]) };
        for name in &mine {
            if let Some(r) = rooms.get_mut(name) {
                r.members.remove(conn);
                if r.members.is_empty() && r.history.is_empty() {
                    rooms.remove(name);
                }
            }
        }
        Ok(mine.into_iter().collect())
    }

    async fn publish(
        &self,
        room: &RoomName,
        message: &MessageTemplate,
        now_ms: u64,
        bounds: &PublishBounds<'_>,
    ) -> Result<Published, PublishError> {
        let mut g = self.lock()?;
        let g = &mut *g;
        let name = room.as_str();
        let is_new = g.rooms.get(name).is_none_or(|r| r.seq == 0);
        let creator = bounds.creator.filter(|_| is_new && self.history > 0);
        if let Some(quota) = creator {
            let held = g.created_by.get(quota.key_id).map_or(0, HashSet::len);
            if held >= quota.max_rooms {
                return Err(PublishError::TooManyRooms(held));
            }
            g.created_by.entry(quota.key_id.to_owned()).or_default().insert(name.to_owned());
        }
        let r = g.rooms.entry(name.to_owned()).or_default();
        if let Some(quota) = creator {
            r.creator = Some(quota.key_id.to_owned());
        }
        r.seq += 1;
        r.last_publish_ms = Some(now_ms);
        let frame = message.render(r.seq);
        let (seq, members) = (r.seq, r.members.iter().cloned().collect());
        if self.history > 0 {
            let bytes = frame.as_str().len();
            r.history.push_back((seq, frame.clone()));
            r.history_bytes += bytes;
            g.history_bytes += bytes;
            g.history_messages += 1;
            g.evict_order.push_back((name.to_owned(), seq));
            // Oldest first, by count and by bytes; the newest message always stays.
            while g.rooms.get(name).is_some_and(|r| {
                r.history.len() > self.history || (r.history.len() > 1 && r.history_bytes > bounds.room_history_bytes)
            }) {
                g.drop_oldest(name);
            }
            g.evict_to(bounds.max_history_bytes_total);
        }
        Ok(Published { seq, frame, members, dispatched: 0 })
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<ConnId>, StoreError> {
        Ok(self.lock()?.rooms.get(room.as_str()).map(|r| r.members.iter().cloned().collect()).unwrap_or_default())
    }

    async fn list_rooms(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<Page<RoomInfo>, StoreError> {
        let g = self.lock()?;
        let start = cursor.unwrap_or(prefix);
        let mut items = Vec::new();
        let mut next = None;
        for (name, room) in g.rooms.range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded)) {
            if !name.starts_with(prefix) {
                break;
            }
            if cursor == Some(name.as_str()) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|i: &RoomInfo| i.room.clone());
                break;
            }
            items.push(room.info(name));
        }
        Ok(Page { items, next })
    }

    async fn room_info(&self, room: &RoomName) -> Result<Option<RoomInfo>, StoreError> {
        Ok(self.lock()?.rooms.get(room.as_str()).map(|r| r.info(room.as_str())))
    }
}

#[async_trait]
impl LimitStore for MemoryRoomStore {
    async fn claim_slot(
        &self,
        key_id: &str,
        conn: &str,
        cap: u32,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let slots = g.slots.entry(key_id.to_owned()).or_default();
        slots.retain(|_, exp| *exp > now_ms);
        if !slots.contains_key(conn) && slots.len() >= cap as usize {
            return Ok(false);
        }
        slots.insert(conn.to_owned(), expires_at_ms);
        Ok(true)
    }

    async fn release_slot(&self, key_id: &str, conn: &str) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(slots) = g.slots.get_mut(key_id) {
            slots.remove(conn);
            if slots.is_empty() {
                g.slots.remove(key_id);
            }
        }
        Ok(())
    }

    async fn take_token(&self, bucket: &str, rate: u32, burst: u32) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let now = std::time::Instant::now();
        // Amortized: sweep idle buckets whenever the map has doubled since the last sweep.
        if g.buckets.len() >= 2 * g.buckets_swept_at.max(512) {
            g.buckets.retain(|_, b| !b.is_full_at(now));
            g.buckets_swept_at = g.buckets.len();
        }
        // (No key allocation for a bucket that exists: the common case.)
        if let Some(b) = g.buckets.get_mut(bucket) {
            return Ok(b.try_take());
        }
        let mut fresh = TokenBucket::new(rate, burst);
        let taken = fresh.try_take();
        g.buckets.insert(bucket.to_owned(), fresh);
        Ok(taken)
    }
}

#[derive(Default)]
struct Connections {
    records: BTreeMap<String, ConnectionRecord>,
    by_key: HashMap<String, BTreeSet<String>>,
}

/// Connection records in process memory, with an index by key id.
#[derive(Default)]
pub struct MemoryConnectionStore {
    inner: Mutex<Connections>,
}

impl MemoryConnectionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connections>, StoreError> {
        self.inner.lock().map_err(|_| poisoned())
    }
}

fn page_of<'a>(
    ids: impl Iterator<Item = &'a String>,
    records: &BTreeMap<String, ConnectionRecord>,
    cursor: Option<&str>,
    limit: usize,
    now_s: u64,
) -> Page<ConnectionRecord> {
    let mut items = Vec::new();
    let mut next = None;
    for id in ids.filter(|id| cursor.is_none_or(|c| id.as_str() > c)) {
        let Some(rec) = records.get(id) else { continue };
        if rec.expired(now_s) {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|r: &ConnectionRecord| r.connection_id.clone());
            break;
        }
        items.push(rec.clone());
    }
    Page { items, next }
}

#[async_trait]
impl ConnectionStore for MemoryConnectionStore {
    async fn put(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if let Some(old) = g.records.insert(record.connection_id.clone(), record.clone()) {
            if let Some(set) = g.by_key.get_mut(&old.key_id) {
                set.remove(&old.connection_id);
            }
        }
        g.by_key.entry(record.key_id.clone()).or_default().insert(record.connection_id.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let now_s = now_ms() / 1000;
        Ok(self.lock()?.records.get(id).filter(|r| !r.expired(now_s)).cloned())
    }

    async fn delete(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let mut g = self.lock()?;
        let Some(old) = g.records.remove(id) else { return Ok(None) };
        if let Some(set) = g.by_key.get_mut(&old.key_id) {
            set.remove(id);
            if set.is_empty() {
                g.by_key.remove(&old.key_id);
            }
        }
        Ok(Some(old))
    }

    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ConnectionRecord>, StoreError> {
        let g = self.lock()?;
        Ok(page_of(g.records.keys(), &g.records, cursor, limit, now_ms() / 1000))
    }

    async fn list_by_key(
        &self,
        key_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ConnectionRecord>, StoreError> {
        let g = self.lock()?;
        let Some(ids) = g.by_key.get(key_id) else { return Ok(Page { items: vec![], next: None }) };
        Ok(page_of(ids.iter(), &g.records, cursor, limit, now_ms() / 1000))
    }

    async fn count_by_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let g = self.lock()?;
        let now_s = now_ms() / 1000;
        Ok(g.by_key.get(key_id).map_or(0, |ids| {
            ids.iter().filter(|id| g.records.get(*id).is_some_and(|r| !r.expired(now_s))).count() as u64
        }))
    }
}

/// API-key records in memory, optionally persisted (hashes only) to a JSON file.
pub struct MemoryKeyStore {
    path: Option<PathBuf>,
    inner: Mutex<HashMap<String, KeyRecord>>,
}

impl MemoryKeyStore {
    /// A store that lives only in memory.
    pub fn new() -> Self {
        MemoryKeyStore { path: None, inner: Mutex::new(HashMap::new()) }
    }

    /// A store backed by `path`: loads it if present, rewrites it (atomically) on changes.
    pub fn open(path: PathBuf) -> Result<Self, StoreError> {
        let records: Vec<KeyRecord> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::corrupt("key file", format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(StoreError::unavailable("key file", format!("{}: {e}", path.display()))),
        };
        let map = records.into_iter().map(|r| (r.key_hash.clone(), r)).collect();
        Ok(MemoryKeyStore { path: Some(path), inner: Mutex::new(map) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, KeyRecord>>, StoreError> {
        self.inner.lock().map_err(|_| poisoned())
    }

    fn persist(&self, map: &HashMap<String, KeyRecord>) -> Result<(), StoreError> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut records: Vec<&KeyRecord> = map.values().collect();
        records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        let text = serde_json::to_string_pretty(&records).map_err(|e| StoreError::corrupt("key file", e))?;
        crate::private_file::write(path, text.as_bytes())
            .map_err(|e| StoreError::unavailable("key file", format!("{}: {e}", path.display())))
    }
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn create(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.contains_key(&record.key_hash) {
            return Err(StoreError::AlreadyExists(format!("key {}", record.key_id)));
        }
        // Expired records go as new ones arrive: what the keys table's TTL does on AWS, so
        // a smoke run that died before deleting its key leaves nothing here either.
        let now = now_ms();
        let before = g.clone();
        g.retain(|_, r| !r.is_expired(now));
        g.insert(record.key_hash.clone(), record.clone());
        if let Err(e) = self.persist(&g) {
            *g = before;
            return Err(e);
        }
        Ok(())
    }

    async fn get_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lock()?.get(key_hash).cloned())
    }

    async fn get_by_id(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lock()?.values().find(|r| r.key_id == key_id).cloned())
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut all: Vec<KeyRecord> = self.lock()?.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(all)
    }

    async fn revoke(&self, key_id: &str, now_ms: u64) -> Result<Option<KeyRecord>, StoreError> {
        let mut g = self.lock()?;
        let Some(rec) = g.values_mut().find(|r| r.key_id == key_id) else { return Ok(None) };
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(now_ms);
        }
        let out = rec.clone();
        self.persist(&g)?;
        Ok(Some(out))
    }

    async fn delete(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let mut g = self.lock()?;
        let Some(hash) = g.values().find(|r| r.key_id == key_id).map(|r| r.key_hash.clone()) else {
            return Ok(None);
        };
        let Some(rec) = g.remove(&hash) else { return Ok(None) };
        if let Err(e) = self.persist(&g) {
            g.insert(hash, rec);
            return Err(e);
        }
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_keys_leave_the_key_file_when_the_next_key_is_created() {
        use crate::auth::{generate, KeyLimits, Scope, Scopes};
        let dir = std::env::temp_dir().join(format!("wsctl-keys-{}", std::process::id()));
        let path = dir.join("keys.json");
        std::fs::create_dir_all(&dir).unwrap();
        let store = MemoryKeyStore::open(path.clone()).unwrap();
        let key = |name: &str, expires_at| {
            let limits = KeyLimits { expires_at, ..KeyLimits::default() };
            generate(name, Scopes::new(vec![Scope::Subscribe]), limits, now_ms()).record
        };
        let (expired, lasting, next) = (key("expired", Some(1)), key("lasting", None), key("next", None));
        store.create(&expired).await.unwrap();
        store.create(&lasting).await.unwrap();
        let ids = |store: &MemoryKeyStore| {
            let g = store.lock().unwrap();
            let mut ids: Vec<String> = g.values().map(|r| r.name.clone()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&store), ["lasting"], "the expired key went when the next one came");
        store.create(&next).await.unwrap();
        let reopened = MemoryKeyStore::open(path).unwrap();
        assert_eq!(ids(&reopened), ["lasting", "next"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_bucket_limits_its_name_only_and_idle_buckets_are_swept() {
        let store = MemoryRoomStore::new(10);
        let taken = |name: &'static str| {
            let store = &store;
            async move {
                let mut n = 0;
                for _ in 0..10 {
                    n += usize::from(store.take_token(name, 1, 3).await.expect("memory store"));
                }
                n
            }
        };
        assert_eq!(taken("c:a").await, 3, "the burst, then nothing at 1/s");
        assert_eq!(taken("c:b").await, 3, "another bucket is independent");

        // 6,000 one-shot buckets at 1000/s, each full again within a millisecond: the
        // sweeps that run as the map doubles keep it from growing with them.
        for round in 0..10 {
            for i in 0..600 {
                store.take_token(&format!("k:{round}:{i}"), 1000, 1).await.expect("memory store");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let left = store.lock().expect("lock").buckets.len();
        assert!(left < 1_300, "idle buckets are swept: {left} of 6,002 left");
    }
}
