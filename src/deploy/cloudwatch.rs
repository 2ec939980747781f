//! The CloudWatch calls of `wsctl status`, over [`QueryApi`]: the stage's alarms and their
//! states (DescribeAlarms by name prefix) and metric statistics (GetMetricData, for the
//! probe's last run and the month's availability). Both page with `NextToken`.

use super::query_api::{self, clip, text, QueryApi};
use anyhow::{bail, Context};
use aws_sdk_cloudformation::primitives::{DateTime, DateTimeFormat};
use aws_smithy_xml::decode::{Document, ScopedDecoder};
use std::collections::BTreeMap;

/// One metric alarm and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricAlarm {
    /// Its name (CloudFormation's `STACK-LogicalId-SUFFIX` for the stacks' alarms).
    pub name: String,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// CloudWatch's reason for the state.
    pub reason: Option<String>,
}

/// One statistic of one metric, for GetMetricData.
#[derive(Debug, Clone, Copy)]
pub struct MetricQuery<'a> {
    /// The query's id in the answer (lowercase letter first).
    pub id: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Metric name.
    pub metric: &'a str,
    /// Dimensions, name and value.
    pub dimensions: &'a [(&'a str, &'a str)],
    /// Period in seconds (a multiple of 60).
    pub period_secs: u32,
    /// `Sum`, `Average`, …
    pub stat: &'a str,
}

/// Datapoints of a query: epoch seconds and value.
pub type Series = Vec<(i64, f64)>;

/// One answer page: the items and the `NextToken`.
type Page<T> = (Vec<T>, Option<String>);

/// CloudWatch's Query API (signing name `monitoring`).
pub struct CloudWatch {
    api: QueryApi,
}

impl CloudWatch {
    /// A client for the configuration's region (and its endpoint override, e.g. moto).
    pub fn new(config: &aws_types::SdkConfig) -> anyhow::Result<CloudWatch> {
        Ok(CloudWatch { api: QueryApi::new(config, query_api::CLOUDWATCH)? })
    }

    /// Every metric alarm whose name starts with `prefix`.
    pub async fn alarms_named(&self, prefix: &str) -> anyhow::Result<Vec<MetricAlarm>> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut params = vec![
                ("AlarmNamePrefix".to_owned(), prefix.to_owned()),
                ("AlarmTypes.member.1".to_owned(), "MetricAlarm".to_owned()),
                ("MaxRecords".to_owned(), "100".to_owned()),
            ];
            if let Some(token) = &next {
                params.push(("NextToken".to_owned(), token.clone()));
            }
            let xml = self.api.call("DescribeAlarms", &params).await?;
            let (page, token) = parse_alarms(&xml)
                .with_context(|| format!("reading CloudWatch's DescribeAlarms answer: {}", clip(&xml)))?;
            all.extend(page);
            match token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// The datapoints of `queries` between `start` and `end` (epoch seconds), by query id,
    /// newest first; a query without data has an empty series.
    pub async fn metric_data(
        &self,
        queries: &[MetricQuery<'_>],
        start: i64,
        end: i64,
    ) -> anyhow::Result<BTreeMap<String, Series>> {
        let time = |secs: i64| DateTime::from_secs(secs).fmt(DateTimeFormat::DateTime).context("formatting a time");
        let mut base = vec![
            ("StartTime".to_owned(), time(start)?),
            ("EndTime".to_owned(), time(end)?),
            ("ScanBy".to_owned(), "TimestampDescending".to_owned()),
        ];
        for (i, q) in queries.iter().enumerate() {
            let p = format!("MetricDataQueries.member.{}", i + 1);
            base.push((format!("{p}.Id"), q.id.to_owned()));
            base.push((format!("{p}.MetricStat.Metric.Namespace"), q.namespace.to_owned()));
            base.push((format!("{p}.MetricStat.Metric.MetricName"), q.metric.to_owned()));
            for (j, (name, value)) in q.dimensions.iter().enumerate() {
                let d = format!("{p}.MetricStat.Metric.Dimensions.member.{}", j + 1);
                base.push((format!("{d}.Name"), (*name).to_owned()));
                base.push((format!("{d}.Value"), (*value).to_owned()));
            }
            base.push((format!("{p}.MetricStat.Period"), q.period_secs.to_string()));
            base.push((format!("{p}.MetricStat.Stat"), q.stat.to_owned()));
            base.push((format!("{p}.ReturnData"), "true".to_owned()));
        }
        let mut all: BTreeMap<String, Series> = queries.iter().map(|q| (q.id.to_owned(), Series::new())).collect();
        let mut next: Option<String> = None;
        loop {
            let mut params = base.clone();
            if let Some(token) = &next {
                params.push(("NextToken".to_owned(), token.clone()));
            }
            let xml = self.api.call("GetMetricData", &params).await?;
            let (page, token) = parse_metric_data(&xml)
                .with_context(|| format!("reading CloudWatch's GetMetricData answer: {}", clip(&xml)))?;
            for (id, points) in page {
                all.entry(id).or_default().extend(points);
            }
            match token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => return Ok(all),
            }
        }
    }
}

/// The children of `<Action>Result>`, then `f` on each `member` of the list named `list`;
/// returns the page's `NextToken`.
fn each_member(
    xml: &str,
    list: &str,
    mut f: impl FnMut(&mut ScopedDecoder<'_, '_>) -> anyhow::Result<()>,
) -> anyhow::Result<Option<String>> {
    let mut doc = Document::new(xml);
    let mut root = query_api::root(&mut doc)?;
    let mut token = None;
    while let Some(mut result) = root.next_tag() {
        if !result.start_el().local().ends_with("Result") {
            continue;
        }
        while let Some(mut tag) = result.next_tag() {
            if tag.start_el().matches(list) {
                while let Some(mut member) = tag.next_tag() {
                    if member.start_el().matches("member") {
                        f(&mut member)?;
                    }
                }
            } else if tag.start_el().matches("NextToken") {
                token = Some(text(&mut tag)?);
            }
        }
    }
    Ok(token)
}

/// The metric alarms of one DescribeAlarms page and its `NextToken`.
fn parse_alarms(xml: &str) -> anyhow::Result<Page<MetricAlarm>> {
    let mut alarms = Vec::new();
    let token = each_member(xml, "MetricAlarms", |member| {
        let (mut name, mut state, mut reason) = (String::new(), String::new(), None);
        while let Some(mut field) = member.next_tag() {
            match field.start_el().local() {
                "AlarmName" => name = text(&mut field)?,
                "StateValue" => state = text(&mut field)?,
                "StateReason" => reason = Some(text(&mut field)?),
                _ => {}
            }
        }
        if name.is_empty() || state.is_empty() {
            bail!("an alarm without AlarmName or StateValue");
        }
        alarms.push(MetricAlarm { name, state, reason });
        Ok(())
    })?;
    Ok((alarms, token))
}

/// The series of one GetMetricData page, by id, and its `NextToken`.
fn parse_metric_data(xml: &str) -> anyhow::Result<Page<(String, Series)>> {
    let mut results = Vec::new();
    let token = each_member(xml, "MetricDataResults", |member| {
        let (mut id, mut times, mut values) = (String::new(), Vec::new(), Vec::new());
        while let Some(mut field) = member.next_tag() {
            match field.start_el().local() {
                "Id" => id = text(&mut field)?,
                "Timestamps" => {
                    while let Some(mut t) = field.next_tag() {
                        let stamp = text(&mut t)?;
                        let at = DateTime::from_str(&stamp, DateTimeFormat::DateTime)
                            .with_context(|| format!("timestamp '{stamp}'"))?;
                        times.push(at.secs());
                    }
                }
                "Values" => {
                    while let Some(mut v) = field.next_tag() {
                        let value = text(&mut v)?;
                        values.push(value.parse::<f64>().with_context(|| format!("value '{value}'"))?);
                    }
                }
                _ => {}
            }
        }
        if id.is_empty() || times.len() != values.len() {
            bail!("a result without Id, or with {} timestamps for {} values", times.len(), values.len());
        }
        results.push((id, times.into_iter().zip(values).collect()));
        Ok(())
    })?;
    Ok((results, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_describe_alarms_page_without_the_nested_members() {
        let xml = r#"<DescribeAlarmsResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <DescribeAlarmsResult>
    <MetricAlarms>
      <member>
        <AlarmName>wsctl-prod-app-AlarmConnectErrors-1A2B3C</AlarmName>
        <Dimensions><member><Name>FunctionName</Name><Value>f</Value></member></Dimensions>
        <StateValue>ALARM</StateValue>
        <StateReason>Threshold Crossed: 1 datapoint [7.0] was greater than or equal to 5.0</StateReason>
      </member>
      <member>
        <AlarmName>wsctl-prod-app-AlarmApiErrors-9Z</AlarmName>
        <Metrics><member><Id>integration</Id></member></Metrics>
        <StateValue>OK</StateValue>
      </member>
    </MetricAlarms>
    <CompositeAlarms/>
    <NextToken>page2</NextToken>
  </DescribeAlarmsResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</DescribeAlarmsResponse>"#;
        let (alarms, token) = parse_alarms(xml).unwrap();
        assert_eq!(token.as_deref(), Some("page2"));
        assert_eq!(alarms.len(), 2, "{alarms:?}");
        assert_eq!(
            (alarms[0].name.as_str(), alarms[0].state.as_str()),
            ("wsctl-prod-app-AlarmConnectErrors-1A2B3C", "ALARM")
        );
        assert!(alarms[0].reason.as_deref().unwrap().starts_with("Threshold Crossed"));
        assert_eq!((alarms[1].state.as_str(), alarms[1].reason.as_deref()), ("OK", None));
        assert!(parse_alarms("<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms><member><AlarmName>a</AlarmName></member></MetricAlarms></DescribeAlarmsResult></DescribeAlarmsResponse>").is_err());
    }

    #[test]
    fn reads_a_get_metric_data_page() {
        let xml = r#"<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">
  <GetMetricDataResult>
    <MetricDataResults>
      <member>
        <Id>success</Id><Label>Success</Label><StatusCode>Complete</StatusCode>
        <Timestamps><member>2026-12-04T11:00:00Z</member><member>2026-12-04T10:00:00Z</member></Timestamps>
        <Values><member>59.0</member><member>60</member></Values>
      </member>
      <member><Id>failure</Id><Timestamps/><Values/><StatusCode>Complete</StatusCode></member>
    </MetricDataResults>
    <NextToken>t</NextToken>
    <Messages/>
  </GetMetricDataResult>
</GetMetricDataResponse>"#;
        let (results, token) = parse_metric_data(xml).unwrap();
        assert_eq!(token.as_deref(), Some("t"));
        let eleven = DateTime::from_str("2026-12-04T11:00:00Z", DateTimeFormat::DateTime).unwrap().secs();
        assert_eq!(results[0], ("success".to_owned(), vec![(eleven, 59.0), (eleven - 3600, 60.0)]));
        assert_eq!(results[1], ("failure".to_owned(), vec![]));
    }
}
