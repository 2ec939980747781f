#!/usr/bin/env python3
"""Puts into a moto server, with boto3, the CloudWatch state `wsctl status` reads, for
tests/deploy_production.rs (moto's CloudFormation skips AWS::CloudWatch::Alarm, and nothing
runs the probe there):

  alarms --endpoint E --alarm NAME=STATE ...
      creates one metric alarm per NAME (as CloudFormation would name it) and sets its
      state (OK, ALARM, INSUFFICIENT_DATA) with the reason "set by the test".
  probe --endpoint E --stage S --passed N --failed M
      records N passing and M failing probe runs this month, one a minute, newest first
      the failing ones, the way the probe's EMF line does: Success and Failure (one of
      them 1) in namespace wsctl/probe with dimension Stage.
  dashboard --endpoint E --name NAME
      prints the dashboard's body.
Each prints one JSON line of what it did.
"""

import argparse
import datetime
import json

import boto3


def client(endpoint):
    return boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def alarms(cw, specs):
    done = []
    for spec in specs:
        name, state = spec.split("=")
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set by the test")
        done.append(name)
    return {"alarms": done}


def probe(cw, stage, passed, failed):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    month = now.replace(day=1, hour=0, minute=0, second=0)
    runs = [False] * failed + [True] * passed
    stamps = []
    for i, ok in enumerate(runs):
        at = now - datetime.timedelta(minutes=i + 1)
        if at < month:
            # Early in the month: squeeze the runs into its first minutes.
            at = month + datetime.timedelta(seconds=len(runs) - i)
        dims = [{"Name": "Stage", "Value": stage}]
        cw.put_metric_data(
            Namespace="wsctl/probe",
            MetricData=[
                {"MetricName": "Success", "Dimensions": dims, "Value": 1 if ok else 0, "Unit": "Count", "Timestamp": at},
                {"MetricName": "Failure", "Dimensions": dims, "Value": 0 if ok else 1, "Unit": "Count", "Timestamp": at},
            ],
        )
        stamps.append(at.isoformat())
    return {"runs": len(runs), "newest": stamps[0] if stamps else None}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["alarms", "probe", "dashboard"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--alarm", action="append", default=[])
    p.add_argument("--stage")
    p.add_argument("--passed", type=int, default=0)
    p.add_argument("--failed", type=int, default=0)
    p.add_argument("--name")
    a = p.parse_args()
    cw = client(a.endpoint)
    if a.command == "alarms":
        out = alarms(cw, a.alarm)
    elif a.command == "probe":
        out = probe(cw, a.stage, a.passed, a.failed)
    else:
        out = {"body": cw.get_dashboard(DashboardName=a.name)["DashboardBody"]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
