//! `wsctl logs`: a deployed stage's function logs through CloudWatch Logs
//! (`FilterLogEvents`, on moto_server), and `--stage local`, the running gateway's own log.

use crate::common::DevGateway;
use crate::deploy_support::{stage_yaml, text, Harness};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Writes events into `/aws/lambda/wsctl-logt-app-{function}`, as Lambda does.
async fn put(h: &Harness, function: &str, events: &[(i64, &str)]) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&h.sdk().await);
    let group = format!("/aws/lambda/wsctl-logt-app-{function}");
    let _ = logs.create_log_group().log_group_name(&group).send().await;
    let stream = format!("2026/12/04/[$LATEST]{}", events.len());
    let _ = logs.create_log_stream().log_group_name(&group).log_stream_name(&stream).send().await;
    let mut call = logs.put_log_events().log_group_name(&group).log_stream_name(&stream);
    for (at, message) in events {
        call = call.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(*at)
                .message(*message)
                .build()
                .expect("event"),
        );
    }
    call.send().await.expect("put_log_events");
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn logs_of_a_deployed_stage_come_from_cloudwatch() {
    let h = Harness::new("logt", &stage_yaml(""));
    let rt = h.runtime();
    let now = now_ms();
    rt.block_on(async {
        put(
            &h,
            "message",
            &[(now - 3_600_000, "an hour ago"), (now - 60_000, "START message"), (now - 30_000, "subscribed room=a")],
        )
        .await;
        put(&h, "publish", &[(now - 45_000, "published room=a seq=1")]).await;
    });

    // All functions, in time order, within --since.
    let out = h.wsctl(&["logs", "--stage", "logt", "--since", "10m"]);
    assert!(out.status.success(), "{}", text(&out));
    let all = lines(&out);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].contains("message") && all[0].ends_with("START message"), "{all:#?}");
    assert!(all[1].contains("publish") && all[1].ends_with("published room=a seq=1"), "{all:#?}");
    assert!(all[2].ends_with("subscribed room=a"), "{all:#?}");
    assert!(!all.iter().any(|l| l.contains("an hour ago")), "older than --since");

    // One function; a longer --since; JSON per event.
    let out = h.wsctl(&["--output", "json", "logs", "--stage", "logt", "--function", "message", "--since", "2h"]);
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<Value> = lines(&out).iter().map(|l| serde_json::from_str(l).expect("one JSON per line")).collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["function"] == "message"));
    assert_eq!(events[0]["message"], "an hour ago");
    assert!(events[0]["loggedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", events[0]);

    // --filter
    let out = h.wsctl(&["logs", "--stage", "logt", "--filter", "room=a"]);
    let filtered = lines(&out);
    assert_eq!(filtered.len(), 2, "{filtered:#?}");

    // Mistakes say what to do.
    let out = h.wsctl(&["logs", "--stage", "logt", "--function", "mesage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pick one of authorizer, connect"), "{}", text(&out));
    let out = h.wsctl(&["logs", "--stage", "logt", "--function", "admin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it deployed"), "{}", text(&out));

    // --follow prints what arrives later, once.
    let mut child = h
        .command(&["logs", "--stage", "logt", "--function", "publish", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn follow");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert!(stdout.next().expect("first line").expect("line").ends_with("published room=a seq=1"));
    rt.block_on(put(&h, "publish", &[(now_ms(), "published room=a seq=2"), (now_ms(), "x")]));
    let next = stdout.next().expect("a followed line").expect("line");
    assert!(next.ends_with("published room=a seq=2"), "{next}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn logs_of_the_local_stage_follow_the_gateways_own_log() {
    let gw = DevGateway::start();
    // A refused connect is logged by the gateway.
    assert_eq!(crate::common::refused_status(&format!("{}?apiKey=wsk_nope", gw.url)).await, Some(403));
    let log = gw.state.join("gateway.log");
    for _ in 0..100 {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("connect refused")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = gw.cli(&["logs", "--stage", "local", "--filter", "connect refused"]);
    assert_eq!(code, 0, "{err}");
    let first: Vec<&str> = out.lines().collect();
    assert_eq!(first.len(), 1, "{out}");
    assert!(first[0].contains("gateway") && first[0].contains("connect refused"), "{out}");
    assert!(!out.contains("\x1b["), "no colour codes in the log file");

    // --follow shows the next one.
    let mut child = crate::common::wsctl()
        .args(["logs", "--stage", "local", "--follow", "--filter", "connect refused"])
        .env("WSCTL_STATE_DIR", gw.state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).expect("the existing line");
    assert_eq!(crate::common::refused_status(&format!("{}?apiKey=wsk_again", gw.url)).await, Some(403));
    let next = rx.recv_timeout(Duration::from_secs(20)).expect("the new line");
    assert!(next.contains("connect refused"), "{next}");
    let _ = child.kill();
    let _ = child.wait();
}
