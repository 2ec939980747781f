//! Lambda function `admin`: see [`wsctl_handlers::lambda::admin`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::lambda::run("admin", wsctl_handlers::lambda::admin).await
}
