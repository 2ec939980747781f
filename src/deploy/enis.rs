//! Lambda's VPC network interfaces at destroy time.
//!
//! A function in a VPC reaches its subnets through network interfaces that Lambda creates
//! and owns (description `AWS Lambda VPC ENI-…`). They outlive the functions by minutes
//! after the app stack is deleted, and while one exists the data stack's security group
//! and subnets cannot be deleted (`DependencyViolation`). Before the data stack goes,
//! `destroy` deletes the interfaces Lambda has already released (`available`) and waits
//! for the ones still `in-use`.
//!
//! Two EC2 actions are all this needs, so they are sent as signed EC2 Query requests
//! (SigV4 from `aws-sigv4`, the SDK's own signer, over the hyper client the SDK also
//! uses) instead of linking `aws-sdk-ec2`, the largest crate of the SDK, for them.

use crate::ui::Ui;
use anyhow::{bail, Context};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant, SystemTime};

/// The description Lambda gives the interfaces it creates.
pub const LAMBDA_ENI_PREFIX: &str = "AWS Lambda VPC ENI";
const API_VERSION: &str = "2016-11-15";

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    /// `eni-…`.
    pub id: String,
    /// `available`, `in-use`, `attaching`, `detaching`, …
    pub status: String,
    /// Its description (Lambda's start with [`LAMBDA_ENI_PREFIX`]).
    pub description: String,
}

impl NetworkInterface {
    /// Created by Lambda for a function in the VPC.
    pub fn is_lambdas(&self) -> bool {
        self.description.starts_with(LAMBDA_ENI_PREFIX)
    }
}

/// A minimal EC2 Query API client: the SDK configuration's region, endpoint and
/// credentials, and SigV4 signing for the `ec2` service.
pub struct Ec2 {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

impl Ec2 {
    /// A client for the configuration's region (and its endpoint override, e.g. moto).
    pub fn new(config: &aws_types::SdkConfig) -> anyhow::Result<Ec2> {
        let region = config.region().map(|r| r.as_ref().to_owned()).context("no AWS region is configured")?;
        let endpoint = match config.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if region.starts_with("cn-") => format!("https://ec2.{region}.amazonaws.com.cn"),
            None => format!("https://ec2.{region}.amazonaws.com"),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .context("loading the system's root certificates for EC2")?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(Ec2 { http, endpoint, region, credentials: config.credentials_provider() })
    }

    /// Every network interface in security group `group_id`.
    pub async fn interfaces_in_group(&self, group_id: &str) -> anyhow::Result<Vec<NetworkInterface>> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut params = vec![
                ("Filter.1.Name", "group-id".to_owned()),
                ("Filter.1.Value.1", group_id.to_owned()),
                ("MaxResults", "1000".to_owned()),
            ];
            if let Some(token) = &next {
                params.push(("NextToken", token.clone()));
            }
            let xml = self.call("DescribeNetworkInterfaces", &params).await?;
            let (page, token) = parse_interfaces(&xml)
                .with_context(|| format!("reading EC2's DescribeNetworkInterfaces answer: {}", clip(&xml)))?;
            all.extend(page);
            match token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// Deletes one (available) network interface.
    pub async fn delete_interface(&self, id: &str) -> anyhow::Result<()> {
        self.call("DeleteNetworkInterface", &[("NetworkInterfaceId", id.to_owned())]).await.map(drop)
    }

    async fn call(&self, action: &str, params: &[(&str, String)]) -> anyhow::Result<String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", API_VERSION);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .body(body.clone())
            .context("building an EC2 request")?;
        self.sign(&mut request, action).await?;
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let response = self
            .http
            .request(request)
            .await
            .with_context(|| format!("EC2 {action}: no answer from {}", self.endpoint))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.with_context(|| format!("EC2 {action}: reading"))?;
        let text = String::from_utf8_lossy(&bytes.to_bytes()).into_owned();
        if !status.is_success() {
            let (code, message) = parse_error(&text).unwrap_or_else(|| (status.to_string(), clip(&text)));
            bail!("EC2 {action}: {code}: {message}{}", hint(&code, action));
        }
        Ok(text)
    }

    async fn sign(&self, request: &mut http::Request<String>, action: &str) -> anyhow::Result<()> {
        let provider = self.credentials.as_ref().context(
            "no AWS credentials are configured (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
        )?;
        let credentials = provider
            .provide_credentials()
            .await
            .with_context(|| format!("loading AWS credentials for EC2 {action}"))?;
        let identity = credentials.into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .context("EC2 signing parameters")?
            .into();
        let headers = request.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.uri().to_string(),
            headers,
            SignableBody::Bytes(request.body().as_bytes()),
        )
        .context("EC2 request to sign")?;
        let (instructions, _) = sign(signable, &params).context("signing an EC2 request")?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

fn hint(code: &str, action: &str) -> String {
    match code {
        "UnauthorizedOperation" | "AccessDenied" => {
            format!(" (the credentials need ec2:{action}; see `wsctl iam-policy --role deployer`)")
        }
        "RequestLimitExceeded" | "Throttling" => " (EC2 throttled the request; run the command again)".into(),
        _ => String::new(),
    }
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The interfaces of one DescribeNetworkInterfaces page and its `nextToken`.
fn parse_interfaces(xml: &str) -> anyhow::Result<(Vec<NetworkInterface>, Option<String>)> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut interfaces, mut token) = (Vec::new(), None);
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("networkInterfaceSet") {
            while let Some(mut item) = tag.next_tag() {
                if item.start_el().matches("item") {
                    interfaces.push(parse_interface(&mut item)?);
                }
            }
        } else if tag.start_el().matches("nextToken") {
            token = Some(text(&mut tag)?);
        }
    }
    Ok((interfaces, token))
}

fn parse_interface(item: &mut ScopedDecoder<'_, '_>) -> anyhow::Result<NetworkInterface> {
    let mut eni = NetworkInterface { id: String::new(), status: String::new(), description: String::new() };
    while let Some(mut field) = item.next_tag() {
        let slot = match field.start_el().local() {
            "networkInterfaceId" => &mut eni.id,
            "status" => &mut eni.status,
            "description" => &mut eni.description,
            _ => continue,
        };
        *slot = text(&mut field)?;
    }
    if eni.id.is_empty() {
        bail!("a network interface without networkInterfaceId");
    }
    Ok(eni)
}

/// `(Code, Message)` of an EC2 error document (`<Response><Errors><Error>…`).
fn parse_error(xml: &str) -> Option<(String, String)> {
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        while let Some(mut error) = errors.next_tag() {
            let (mut code, mut message) = (None, String::new());
            while let Some(mut field) = error.next_tag() {
                match field.start_el().local() {
                    "Code" => code = text(&mut field).ok(),
                    "Message" => message = text(&mut field).unwrap_or_default(),
                    _ => {}
                }
            }
            if let Some(code) = code {
                return Some((code, message));
            }
        }
    }
    None
}

fn text(tag: &mut ScopedDecoder<'_, '_>) -> anyhow::Result<String> {
    try_data(tag).map(|t| t.into_owned()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Deletes the Lambda interfaces in `group_id` as Lambda releases them, until none is
/// left; an error (and nothing further deleted by the caller) when some are still in use
/// after `timeout`. Returns the ids deleted.
pub async fn release_lambda_interfaces(
    ec2: &Ec2,
    ui: &Ui,
    group_id: &str,
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut deleted = Vec::new();
    let mut announced = false;
    loop {
        let interfaces = ec2
            .interfaces_in_group(group_id)
            .await
            .with_context(|| format!("listing the network interfaces in security group {group_id}"))?;
        let mut in_use = 0;
        for eni in interfaces.iter().filter(|e| e.is_lambdas()) {
            if eni.status == "available" {
                ec2.delete_interface(&eni.id)
                    .await
                    .with_context(|| format!("deleting Lambda's released network interface {}", eni.id))?;
                ui.line(format!("deleted Lambda's network interface {} (released)", eni.id));
                deleted.push(eni.id.clone());
            } else {
                in_use += 1;
            }
        }
        if in_use == 0 {
            return Ok(deleted);
        }
        if started.elapsed() >= timeout {
            bail!(
                "{in_use} network interface(s) of Lambda in security group {group_id} are still in use {} min after \
                 the functions were deleted; the data stack was left in place. Lambda releases them within about \
                 20-40 minutes: run the same `wsctl destroy` again later",
                timeout.as_secs() / 60
            );
        }
        if !announced {
            ui.line(format!(
                "waiting for Lambda to release {in_use} network interface(s) in {group_id} (this can take 20-40 minutes)"
            ));
            announced = true;
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_describe_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>1</requestId>
  <networkInterfaceSet>
    <item>
      <networkInterfaceId>eni-1</networkInterfaceId>
      <groupSet><item><groupId>sg-1</groupId><groupName>x</groupName></item></groupSet>
      <description>AWS Lambda VPC ENI-wsctl-dev-app-connect-0f1e</description>
      <status>available</status>
      <attachment><status>detached</status></attachment>
    </item>
    <item>
      <networkInterfaceId>eni-2</networkInterfaceId>
      <description/>
      <status>in-use</status>
    </item>
  </networkInterfaceSet>
  <nextToken>abc</nextToken>
</DescribeNetworkInterfacesResponse>"#;
        let (enis, token) = parse_interfaces(xml).unwrap();
        assert_eq!(token.as_deref(), Some("abc"));
        assert_eq!(enis.len(), 2);
        assert_eq!((enis[0].id.as_str(), enis[0].status.as_str(), enis[0].is_lambdas()), ("eni-1", "available", true));
        assert_eq!((enis[1].id.as_str(), enis[1].status.as_str(), enis[1].is_lambdas()), ("eni-2", "in-use", false));
    }

    #[test]
    fn reads_an_error() {
        let xml = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized.\
                   </Message></Error></Errors><RequestID>r</RequestID></Response>";
        assert_eq!(parse_error(xml), Some(("UnauthorizedOperation".to_owned(), "You are not authorized.".to_owned())));
        assert!(hint("UnauthorizedOperation", "DeleteNetworkInterface").contains("ec2:DeleteNetworkInterface"));
        assert_eq!(parse_error("not xml"), None);
    }
}
