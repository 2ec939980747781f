//! Connection records and API keys in DynamoDB.
//!
//! Connections table: hash key `connectionId`, TTL attribute `ttl` (epoch seconds), GSI
//! `byKey` (`keyId`, `connectedAt`). API-keys table: hash key `keyHash` (hex SHA-256),
//! GSI `byKeyId`. Reads filter expired items, since DynamoDB deletes them only within
//! about two days. Throttling is retried by the SDK's standard retry mode (exponential
//! backoff with jitter); every call has an operation timeout so an outage fails fast.

use super::*;
use crate::auth::Scopes;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Select};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::time::Duration;

const STORE: &str = "DynamoDB";
/// GSI of the connections table by key id.
pub const BY_KEY_INDEX: &str = "byKey";
/// GSI of the API-keys table by key id.
pub const BY_KEY_ID_INDEX: &str = "byKeyId";

type Item = HashMap<String, AttributeValue>;

/// A DynamoDB client tuned for handlers: bounded timeouts, standard retries with jitter.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
        .build();
    Client::from_conf(conf)
}

fn sdk_err<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if e.code() == Some("ConditionalCheckFailedException") {
        return StoreError::AlreadyExists("item".into());
    }
    StoreError::unavailable(STORE, DisplayErrorContext(&e))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Result<String, StoreError> {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::corrupt(STORE, format!("item lacks string attribute {k}")))
}

fn get_n(item: &Item, k: &str) -> Result<u64, StoreError> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::corrupt(STORE, format!("item lacks number attribute {k}")))
}

fn opt_n(item: &Item, k: &str) -> Option<u64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// Encodes a LastEvaluatedKey as an opaque cursor.
fn encode_cursor(key: &Item) -> String {
    let flat: HashMap<&str, (&str, String)> = key
        .iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(x) => Some((k.as_str(), ("S", x.clone()))),
            AttributeValue::N(x) => Some((k.as_str(), ("N", x.clone()))),
            _ => None,
        })
        .collect();
    serde_json::to_string(&flat).unwrap_or_default()
}

fn decode_cursor(cursor: &str) -> Result<Item, StoreError> {
    let flat: HashMap<String, (String, String)> =
        serde_json::from_str(cursor).map_err(|_| StoreError::corrupt(STORE, "malformed page cursor"))?;
    Ok(flat
        .into_iter()
        .map(|(k, (t, v))| (k, if t == "N" { AttributeValue::N(v) } else { AttributeValue::S(v) }))
        .collect())
}

/// The connections table.
pub struct DynamoConnectionStore {
    client: Client,
    table: String,
}

impl DynamoConnectionStore {
    /// Uses `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoConnectionStore { client, table: table.into() }
    }

    fn record(item: &Item) -> Result<ConnectionRecord, StoreError> {
        Ok(ConnectionRecord {
            connection_id: get_s(item, "connectionId")?,
            key_id: get_s(item, "keyId")?,
            source_ip: get_s(item, "sourceIp").unwrap_or_default(),
            user_agent: get_s(item, "userAgent").unwrap_or_default(),
            connected_at: get_n(item, "connectedAt")?,
            ttl: get_n(item, "ttl")?,
        })
    }

    /// Fills one page from repeated Scan/Query calls (a filtered call may return short pages).
    async fn page(
        &self,
        key_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ConnectionRecord>, StoreError> {
        let now_s = now_ms() / 1000;
        let mut start = cursor.map(decode_cursor).transpose()?;
        let mut items = Vec::new();
        loop {
            let want = (limit - items.len()).max(1) as i32;
            let (got, last) = match key_id {
                None => {
                    let out = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .limit(want)
                        .set_exclusive_start_key(start.take())
                        .filter_expression("#t > :now")
                        .expression_attribute_names("#t", "ttl")
                        .expression_attribute_values(":now", n(now_s))
                        .send()
                        .await
                        .map_err(sdk_err)?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                Some(k) => {
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(BY_KEY_INDEX)
                        .limit(want)
                        .set_exclusive_start_key(start.take())
                        .key_condition_expression("keyId = :k")
                        .filter_expression("#t > :now")
                        .expression_attribute_names("#t", "ttl")
                        .expression_attribute_values(":k", s(k))
                        .expression_attribute_values(":now", n(now_s))
                        .send()
                        .await
                        .map_err(sdk_err)?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            for item in &got {
                items.push(Self::record(item)?);
            }
            match last {
                Some(last) if items.len() < limit => start = Some(last),
                Some(last) => return Ok(Page { items, next: Some(encode_cursor(&last)) }),
                None => return Ok(Page { items, next: None }),
            }
        }
    }
}

#[async_trait]
impl ConnectionStore for DynamoConnectionStore {
    async fn put(&self, r: &ConnectionRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("connectionId", s(&r.connection_id))
            .item("keyId", s(&r.key_id))
            .item("sourceIp", s(&r.source_ip))
            .item("userAgent", s(&r.user_agent))
            .item("connectedAt", n(r.connected_at))
            .item("ttl", n(r.ttl))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let now_s = now_ms() / 1000;
        out.item.as_ref().map(Self::record).transpose().map(|r| r.filter(|r| !r.expired(now_s)))
    }

    async fn delete(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(id))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_err)?;
        match out.attributes {
            Some(a) if !a.is_empty() => Self::record(&a).map(Some),
            _ => Ok(None),
        }
    }

    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ConnectionRecord>, StoreError> {
        self.page(None, cursor, limit).await
    }

    async fn list_by_key(
        &self,
        key_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ConnectionRecord>, StoreError> {
        self.page(Some(key_id), cursor, limit).await
    }

    async fn count_by_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let now_s = now_ms() / 1000;
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_KEY_INDEX)
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .key_condition_expression("keyId = :k")
                .filter_expression("#t > :now")
                .expression_attribute_names("#t", "ttl")
                .expression_attribute_values(":k", s(key_id))
                .expression_attribute_values(":now", n(now_s))
                .send()
                .await
                .map_err(sdk_err)?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(total),
            }
        }
    }
}

/// The API-keys table.
pub struct DynamoKeyStore {
    client: Client,
    table: String,
}

impl DynamoKeyStore {
    /// Uses `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoKeyStore { client, table: table.into() }
    }

    fn record(item: &Item) -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord {
            key_hash: get_s(item, "keyHash")?,
            key_id: get_s(item, "keyId")?,
            name: get_s(item, "name").unwrap_or_default(),
            scopes: Scopes::parse_list(&get_s(item, "scopes")?).map_err(|e| StoreError::corrupt(STORE, e))?,
            max_connections: opt_n(item, "maxConnections").unwrap_or(0) as u32,
            created_at: get_n(item, "createdAt")?,
            revoked_at: opt_n(item, "revokedAt"),
            room_prefix: item.get("roomPrefix").and_then(|v| v.as_s().ok()).cloned(),
            expires_at: opt_n(item, "expiresAt"),
        })
    }
}

#[async_trait]
impl KeyStore for DynamoKeyStore {
    async fn create(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("keyHash", s(&r.key_hash))
            .item("keyId", s(&r.key_id))
            .item("name", s(&r.name))
            .item("scopes", s(r.scopes.to_string()))
            .item("maxConnections", n(r.max_connections.into()))
            .item("createdAt", n(r.created_at));
        if let Some(prefix) = &r.room_prefix {
            put = put.item("roomPrefix", s(prefix));
        }
        if let Some(at) = r.expires_at {
            // `ttl` (epoch s) lets DynamoDB delete the record some time after the expiry the
            // authorizer enforces to the millisecond.
            put = put.item("expiresAt", n(at)).item("ttl", n(at.div_ceil(1000)));
        }
        put.condition_expression("attribute_not_exists(keyHash)").send().await.map_err(|e| match sdk_err(e) {
            StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!("key {}", r.key_id)),
            other => other,
        })?;
        Ok(())
    }

    async fn get_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("keyHash", s(key_hash))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        out.item.as_ref().map(Self::record).transpose()
    }

    async fn get_by_id(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_KEY_ID_INDEX)
            .key_condition_expression("keyId = :k")
            .expression_attribute_values(":k", s(key_id))
            .send()
            .await
            .map_err(sdk_err)?;
        // The index is eventually consistent: read the item itself for its latest state.
        match out.items.unwrap_or_default().first() {
            Some(item) => self.get_by_hash(&get_s(item, "keyHash")?).await,
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_err)?;
            for item in out.items.unwrap_or_default() {
                all.push(Self::record(&item)?);
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        all.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(all)
    }

    async fn revoke(&self, key_id: &str, now_ms: u64) -> Result<Option<KeyRecord>, StoreError> {
        let Some(rec) = self.get_by_id(key_id).await? else { return Ok(None) };
        if rec.is_revoked() {
            return Ok(Some(rec));
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("keyHash", s(&rec.key_hash))
            .update_expression("SET revokedAt = if_not_exists(revokedAt, :now)")
            .expression_attribute_values(":now", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(sdk_err)?;
        out.attributes.as_ref().map(Self::record).transpose()
    }

    async fn delete(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some(rec) = self.get_by_id(key_id).await? else { return Ok(None) };
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("keyHash", s(&rec.key_hash))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_err)?;
        out.attributes.as_ref().map(Self::record).transpose()
    }
}

/// Table definitions wsctl creates for the local gateway on a DynamoDB endpoint
/// (`wsctl dev --dynamodb-endpoint`); deployed stages get them from CloudFormation.
pub async fn ensure_tables(client: &Client, connections: &str, keys: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    let existing = client.list_tables().send().await.map_err(sdk_err)?.table_names.unwrap_or_default();
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .map_err(|e| StoreError::corrupt(STORE, e))
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(t).build().map_err(|e| StoreError::corrupt(STORE, e))
    };
    let all = Projection::builder().projection_type(ProjectionType::All).build();
    if !existing.iter().any(|t| t == connections) {
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(BY_KEY_INDEX)
            .key_schema(key("keyId", KeyType::Hash)?)
            .key_schema(key("connectedAt", KeyType::Range)?)
            .projection(all.clone())
            .build()
            .map_err(|e| StoreError::corrupt(STORE, e))?;
        client
            .create_table()
            .table_name(connections)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("connectionId", ScalarAttributeType::S)?)
            .attribute_definitions(attr("keyId", ScalarAttributeType::S)?)
            .attribute_definitions(attr("connectedAt", ScalarAttributeType::N)?)
            .key_schema(key("connectionId", KeyType::Hash)?)
            .global_secondary_indexes(gsi)
            .send()
            .await
            .map_err(sdk_err)?;
    }
    if !existing.iter().any(|t| t == keys) {
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(BY_KEY_ID_INDEX)
            .key_schema(key("keyId", KeyType::Hash)?)
            .projection(all)
            .build()
            .map_err(|e| StoreError::corrupt(STORE, e))?;
        client
            .create_table()
            .table_name(keys)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("keyHash", ScalarAttributeType::S)?)
            .attribute_definitions(attr("keyId", ScalarAttributeType::S)?)
            .key_schema(key("keyHash", KeyType::Hash)?)
            .global_secondary_indexes(gsi)
            .send()
            .await
            .map_err(sdk_err)?;
    }
    Ok(())
}
