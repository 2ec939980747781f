//! Lambda function `message`: see [`wsctl_handlers::lambda::message`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("message", wsctl_handlers::lambda::message).await
}
