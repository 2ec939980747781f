//! Error types shared by the stores, the sender and the handlers.

use crate::protocol::ErrorCode;

/// A failure of a backing store (Redis or DynamoDB) or of its in-memory stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or timed out; retrying later may succeed.
    #[error("{store} is unavailable: {detail}")]
    Unavailable { store: &'static str, detail: String },
    /// The store answered with something this code does not understand.
    #[error("{store} returned unexpected data: {detail}")]
    Corrupt { store: &'static str, detail: String },
    /// A conditional write found an item that already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
}

impl StoreError {
    /// Shorthand for [`StoreError::Unavailable`].
    pub fn unavailable(store: &'static str, detail: impl ToString) -> Self {
        StoreError::Unavailable { store, detail: detail.to_string() }
    }

    /// Shorthand for [`StoreError::Corrupt`].
    pub fn corrupt(store: &'static str, detail: impl ToString) -> Self {
        StoreError::Corrupt { store, detail: detail.to_string() }
    }
}

/// A failure of a handler, with the protocol error code a client or caller sees.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation: what was wrong and what to do.
    pub message: String,
}

impl HandlerError {
    /// Builds an error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HandlerError { code, message: message.into() }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => {
                HandlerError::new(ErrorCode::Unavailable, format!("{e}; nothing was changed, retry in a moment"))
            }
            other => HandlerError::new(ErrorCode::Internal, other.to_string()),
        }
    }
}
