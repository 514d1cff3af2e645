//! The suite end to end, cut down to seconds: the orchestrator starts real server and
//! client processes of both stacks, runs them by turns in slices, and reports every figure
//! and ratio in the agreed JSON. Only the shape and the bookkeeping are checked here; the
//! figures themselves are the benchmark's business (docs/PERFORMANCE.md), not a test's.

use std::process::Command;

#[test]
fn a_short_run_by_turns_reports_every_stack_in_every_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_secsock-bench"))
        .args([
            "all",
            "--quick",
            "--json",
            "--runs",
            "2",
            "--only",
            "handshakes",
            "--only",
            "rtt",
            "--filter",
            "resumed_1thread_X25519MLKEM768",
            "--stacks",
            "tcp",
            "--stacks",
            "rustls",
            "--stacks",
            "secsock",
        ])
        .output()
        .expect("running secsock-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        json["failures"].as_array().map(Vec::len),
        Some(0),
        "{}",
        json["failures"]
    );
    let results = json["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["measure"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "handshakes_resumed_1thread_X25519MLKEM768",
            "handshake_latency_resumed_p50_X25519MLKEM768",
            "handshake_latency_resumed_p99_X25519MLKEM768",
            "rtt_p50",
            "rtt_p99",
        ]
    );
    for row in results {
        for column in ["secsock", "rustls", "ratio_vs_rustls"] {
            assert!(row[column].as_f64().is_some_and(|v| v > 0.0), "{row}");
        }
    }
    // Both runs measured both stacks, and each run's own ratio is there.
    for measure in ["handshakes_resumed_1thread_X25519MLKEM768", "rtt_p99"] {
        let per_run = &json["per_run"][measure];
        for key in ["secsock", "rustls", "secsock/rustls"] {
            let runs = per_run[key].as_array().unwrap();
            assert_eq!(runs.len(), 2, "{measure} {key}");
            assert!(
                runs.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)),
                "{measure} {key}"
            );
        }
    }
    assert_eq!(json["sizes"]["handshake_slices_per_run"], 10);
    assert_eq!(json["sizes"]["rtt_slices_per_run"], 10);
    // Every endpoint negotiated what the measure asks for.
    let negotiated = json["negotiated"].as_object().unwrap();
    assert!(negotiated
        .keys()
        .any(|k| k.ends_with("X25519MLKEM768/secsock")));
    assert!(negotiated
        .values()
        .all(|v| v.as_str().unwrap().contains("X25519MLKEM768")));
}
