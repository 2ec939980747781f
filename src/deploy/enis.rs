//! Lambda's VPC network interfaces at destroy time.
//!
//! A function in a VPC reaches its subnets through network interfaces that Lambda creates
//! and owns (description `AWS Lambda VPC ENI-…`). They outlive the functions by minutes
//! after the app stack is deleted, and while one exists the data stack's security group
//! and subnets cannot be deleted (`DependencyViolation`). Before the data stack goes,
//! `destroy` deletes the interfaces Lambda has already released (`available`) and waits
//! for the ones still `in-use`.
//!
//! Two EC2 actions are all this needs, so they are sent through [`QueryApi`] instead of
//! linking `aws-sdk-ec2`, the largest crate of the SDK, for them.

use super::query_api::{self, clip, text, QueryApi};
use crate::ui::Ui;
use anyhow::{bail, Context};
use aws_smithy_xml::decode::{Document, ScopedDecoder};
use std::time::{Duration, Instant};

/// The description Lambda gives the interfaces it creates.
pub const LAMBDA_ENI_PREFIX: &str = "AWS Lambda VPC ENI";

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

/// The two EC2 calls `destroy` makes.
pub struct Ec2 {
    api: QueryApi,
}

impl Ec2 {
    /// A client for the configuration's region (and its endpoint override, e.g. moto).
    pub fn new(config: &aws_types::SdkConfig) -> anyhow::Result<Ec2> {
        Ok(Ec2 { api: QueryApi::new(config, query_api::EC2)? })
    }

    /// Every network interface in security group `group_id`.
    pub async fn interfaces_in_group(&self, group_id: &str) -> anyhow::Result<Vec<NetworkInterface>> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut params = vec![
                ("Filter.1.Name".to_owned(), "group-id".to_owned()),
                ("Filter.1.Value.1".to_owned(), group_id.to_owned()),
                ("MaxResults".to_owned(), "1000".to_owned()),
            ];
            if let Some(token) = &next {
                params.push(("NextToken".to_owned(), token.clone()));
            }
            let xml = self.api.call("DescribeNetworkInterfaces", &params).await?;
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
        self.api.call("DeleteNetworkInterface", &[("NetworkInterfaceId".to_owned(), id.to_owned())]).await.map(drop)
    }
}

/// The interfaces of one DescribeNetworkInterfaces page and its `nextToken`.
fn parse_interfaces(xml: &str) -> anyhow::Result<(Vec<NetworkInterface>, Option<String>)> {
    let mut doc = Document::new(xml);
    let mut root = query_api::root(&mut doc)?;
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
}
