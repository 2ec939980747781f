//! The wsctl runtime: connections, rooms, auth, routing and fan-out.
//!
//! The domain knows nothing of how it is invoked: the Lambda binaries in `src/bin/` and
//! the local gateway of `wsctl dev` wire the same [`service::Services`] to different
//! stores (in-memory, Redis, DynamoDB) and senders (in-process queues, the API Gateway
//! management API).

pub mod admin;
pub mod auth;
pub mod error;
pub mod fanout;
pub mod lambda;
pub mod limits;
pub mod metrics;
pub mod private_file;
pub mod protocol;
pub mod ratelimit;
pub mod room;
pub mod sender;
pub mod service;
pub mod smoke;
pub mod store;
