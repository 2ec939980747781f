//! Lambda function `connect`: see [`wsctl_handlers::lambda::connect`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("connect", wsctl_handlers::lambda::connect).await
}
