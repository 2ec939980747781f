#!/usr/bin/env python3
"""Creates network interfaces the way Lambda does for a function in a VPC, with boto3
against a moto server, for tests/deploy_destroy.rs.

Lambda's interfaces carry the description `AWS Lambda VPC ENI-<function>-<uuid>` and the
function's security group. This script creates, in `--group` and `--subnet`:
  * `--available N` of them that Lambda has already released (status `available`);
  * one still in use (attached to an instance, as a live function's interface is), which
    it releases (detaches) when a line arrives on stdin;
and, in a VPC of its own, one Lambda interface of someone else's function, which must be
left alone. It prints one JSON line {"ours": [...], "in_use": id, "other": id} as soon as
they exist, then waits for that line, detaches the in-use one and prints {"released": id}.

`check --ids a,b` prints {"left": [...]} with those of the ids that still exist.
"""

import argparse
import json
import sys
import uuid

import boto3


def client(endpoint):
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def lambda_eni(ec2, subnet, group, function):
    r = ec2.create_network_interface(
        SubnetId=subnet,
        Groups=[group],
        Description=f"AWS Lambda VPC ENI-{function}-{uuid.uuid4()}",
    )
    return r["NetworkInterface"]["NetworkInterfaceId"]


def create(args):
    ec2 = client(args.endpoint)
    ours = [lambda_eni(ec2, args.subnet, args.group, "wsctl-enis-app-connect") for _ in range(args.available)]
    in_use = lambda_eni(ec2, args.subnet, args.group, "wsctl-enis-app-message")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=args.subnet)["Instances"][0]
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=in_use, InstanceId=instance["InstanceId"], DeviceIndex=1
    )["AttachmentId"]
    status = ec2.describe_network_interfaces(NetworkInterfaceIds=[in_use])["NetworkInterfaces"][0]["Status"]
    assert status == "in-use", status
    # Someone else's function, in another VPC.
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    other_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
    other_group = ec2.create_security_group(
        GroupName=f"someone-else-{uuid.uuid4()}", Description="another stack", VpcId=vpc
    )["GroupId"]
    other = lambda_eni(ec2, other_subnet, other_group, "someone-elses-function")
    print(json.dumps({"ours": ours, "in_use": in_use, "other": other}), flush=True)
    sys.stdin.readline()
    ec2.detach_network_interface(AttachmentId=attachment, Force=True)
    # What stood for Lambda's side of the attachment goes too.
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    print(json.dumps({"released": in_use}), flush=True)


def check(args):
    ec2 = client(args.endpoint)
    existing = {n["NetworkInterfaceId"] for n in ec2.describe_network_interfaces()["NetworkInterfaces"]}
    print(json.dumps({"left": [i for i in args.ids.split(",") if i in existing]}), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--subnet", required=True)
    c.add_argument("--available", type=int, default=2)
    k = sub.add_parser("check")
    k.add_argument("--endpoint", required=True)
    k.add_argument("--ids", required=True)
    args = p.parse_args()
    {"create": create, "check": check}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
