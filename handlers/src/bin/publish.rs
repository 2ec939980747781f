//! Lambda function `publish`: a producer's message (see [`wsctl_handlers::lambda::publish`]),
//! or shard jobs of a queued fan-out ([`wsctl_handlers::fanout`]).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run_publish().await
}
