//! The test kit's own tests (real redis-server, moto_server, Redis Cluster), one binary.

mod redis_cluster;
mod services;
