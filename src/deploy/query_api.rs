//! A minimal client for AWS's Query protocol (form-encoded `Action=…&Version=…` POSTs,
//! XML answers), shared by the few EC2 and CloudWatch calls wsctl makes: signed with
//! SigV4 from `aws-sigv4` (the SDK's own signer) over the hyper client the SDK also uses,
//! with the SDK configuration's region, endpoint override (moto) and credentials. Linking
//! `aws-sdk-ec2` or `aws-sdk-cloudwatch` for a handful of calls would add the largest crates
//! of the SDK (and a CBOR codec) to every build.

use anyhow::{bail, Context};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::SystemTime;

/// One AWS service spoken over the Query protocol.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Its name in messages (`EC2`).
    pub label: &'static str,
    /// SigV4 signing name, also the endpoint's first label (`ec2`, `monitoring`).
    pub signing_name: &'static str,
    /// Prefix of its IAM actions (`ec2`, `cloudwatch`), for the access-denied hint.
    pub iam_prefix: &'static str,
    /// The `Version` parameter.
    pub api_version: &'static str,
}

/// EC2 (Lambda's network interfaces at destroy).
pub const EC2: Service = Service { label: "EC2", signing_name: "ec2", iam_prefix: "ec2", api_version: "2016-11-15" };

/// CloudWatch (alarm states and the probe's metrics in `status`).
pub const CLOUDWATCH: Service =
    Service { label: "CloudWatch", signing_name: "monitoring", iam_prefix: "cloudwatch", api_version: "2010-08-01" };

/// A signed Query API client for one service.
pub struct QueryApi {
    service: Service,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

impl QueryApi {
    /// A client for the configuration's region (and its endpoint override, e.g. moto).
    pub fn new(config: &aws_types::SdkConfig, service: Service) -> anyhow::Result<QueryApi> {
        let region = config.region().map(|r| r.as_ref().to_owned()).context("no AWS region is configured")?;
        let endpoint = match config.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if region.starts_with("cn-") => format!("https://{}.{region}.amazonaws.com.cn", service.signing_name),
            None => format!("https://{}.{region}.amazonaws.com", service.signing_name),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .with_context(|| format!("loading the system's root certificates for {}", service.label))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(QueryApi { service, http, endpoint, region, credentials: config.credentials_provider() })
    }

    /// Sends `action` with `params` and returns the answer's XML; an AWS error becomes
    /// `LABEL Action: Code: message` (with a hint for access denied and throttling).
    pub async fn call(&self, action: &str, params: &[(String, String)]) -> anyhow::Result<String> {
        let label = self.service.label;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", self.service.api_version);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .body(body.clone())
            .with_context(|| format!("building a {label} request"))?;
        self.sign(&mut request, action).await?;
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let response = self
            .http
            .request(request)
            .await
            .with_context(|| format!("{label} {action}: no answer from {}", self.endpoint))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.with_context(|| format!("{label} {action}: reading"))?;
        let text = String::from_utf8_lossy(&bytes.to_bytes()).into_owned();
        if !status.is_success() {
            let (code, message) = parse_error(&text).unwrap_or_else(|| (status.to_string(), clip(&text)));
            bail!("{label} {action}: {code}: {message}{}", self.hint(&code, action));
        }
        Ok(text)
    }

    async fn sign(&self, request: &mut http::Request<String>, action: &str) -> anyhow::Result<()> {
        let label = self.service.label;
        let provider = self.credentials.as_ref().context(
            "no AWS credentials are configured (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
        )?;
        let credentials = provider
            .provide_credentials()
            .await
            .with_context(|| format!("loading AWS credentials for {label} {action}"))?;
        let identity = credentials.into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .with_context(|| format!("{label} signing parameters"))?
            .into();
        let headers = request.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.uri().to_string(),
            headers,
            SignableBody::Bytes(request.body().as_bytes()),
        )
        .with_context(|| format!("{label} request to sign"))?;
        let (instructions, _) =
            sign(signable, &params).with_context(|| format!("signing a {label} request"))?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }

    fn hint(&self, code: &str, action: &str) -> String {
        match code {
            "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
                format!(" (the credentials need {}:{action}; see `wsctl iam-policy`)", self.service.iam_prefix)
            }
            "RequestLimitExceeded" | "Throttling" => {
                format!(" ({} throttled the request; run the command again)", self.service.label)
            }
            _ => String::new(),
        }
    }
}

/// The first 300 characters of an answer, for error messages.
pub fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// `(Code, Message)` of a Query error document: EC2's `<Response><Errors><Error>…` or the
/// other services' `<ErrorResponse><Error>…`.
fn parse_error(xml: &str) -> Option<(String, String)> {
    fn read(error: &mut ScopedDecoder<'_, '_>) -> Option<(String, String)> {
        let (mut code, mut message) = (None, String::new());
        while let Some(mut field) = error.next_tag() {
            match field.start_el().local() {
                "Code" => code = text(&mut field).ok(),
                "Message" => message = text(&mut field).unwrap_or_default(),
                _ => {}
            }
        }
        code.map(|c| (c, message))
    }
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    while let Some(mut child) = root.next_tag() {
        if child.start_el().matches("Error") {
            if let Some(found) = read(&mut child) {
                return Some(found);
            }
        } else if child.start_el().matches("Errors") {
            while let Some(mut error) = child.next_tag() {
                if let Some(found) = read(&mut error) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// The text of an element.
pub fn text(tag: &mut ScopedDecoder<'_, '_>) -> anyhow::Result<String> {
    try_data(tag).map(|t| t.into_owned()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The root element of an answer.
pub fn root<'a, 'inp>(doc: &'a mut Document<'inp>) -> anyhow::Result<ScopedDecoder<'inp, 'a>> {
    doc.root_element().map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_shapes() {
        let ec2 = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized.\
                   </Message></Error></Errors><RequestID>r</RequestID></Response>";
        assert_eq!(parse_error(ec2), Some(("UnauthorizedOperation".to_owned(), "You are not authorized.".to_owned())));
        let cloudwatch = r#"<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>The parameter Period is bad.</Message></Error>
  <RequestId>r</RequestId>
</ErrorResponse>"#;
        assert_eq!(
            parse_error(cloudwatch),
            Some(("InvalidParameterValue".to_owned(), "The parameter Period is bad.".to_owned()))
        );
        assert_eq!(parse_error("not xml"), None);
    }

    #[test]
    fn the_hint_names_the_services_iam_action() {
        let config = aws_types::SdkConfig::builder().region(aws_types::region::Region::new("eu-west-1")).build();
        let cw = QueryApi::new(&config, CLOUDWATCH).unwrap();
        assert_eq!(cw.endpoint, "https://monitoring.eu-west-1.amazonaws.com");
        assert!(cw.hint("AccessDenied", "DescribeAlarms").contains("cloudwatch:DescribeAlarms"));
        let ec2 = QueryApi::new(&config, EC2).unwrap();
        assert!(ec2.hint("UnauthorizedOperation", "DeleteNetworkInterface").contains("ec2:DeleteNetworkInterface"));
    }
}
