//! Lambda function `publish`: see [`wsctl_handlers::lambda::publish`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("publish", wsctl_handlers::lambda::publish).await
}
