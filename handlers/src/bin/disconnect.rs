//! Lambda function `disconnect`: see [`wsctl_handlers::lambda::disconnect`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("disconnect", wsctl_handlers::lambda::disconnect).await
}
