//! Lambda function `authorizer`: see [`wsctl_handlers::lambda::authorizer`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("authorizer", wsctl_handlers::lambda::authorizer).await
}
