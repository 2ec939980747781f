//! Lambda function `probe` (only with `probe:` in the stage file): the smoke journey every
//! minute, see [`wsctl_handlers::smoke::probe`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    wsctl_handlers::smoke::probe::run_probe().await
}
