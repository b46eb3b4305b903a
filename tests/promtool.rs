//! The monitoring examples as Prometheus's own `promtool` reads them (fast: no server):
//! `check rules` on `examples/monitoring/qlik-alerts.yml`, `check config` on
//! `examples/monitoring/prometheus.yml`, and `test rules` on
//! `examples/monitoring/qlik-alerts.test.yml`, the alerts' unit tests with their real `for:`
//! durations, which must cover every alert of the file firing and not firing. A real
//! Prometheus scraping a real server is `e2e_prometheus.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::prometheus::{PROMETHEUS_INSTALL, PromTools, require_prometheus};

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring")
}

/// `promtool args…` in `dir`: (success, stdout + stderr).
fn promtool(tools: &PromTools, dir: &Path, args: &[&str]) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(&tools.promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    eprintln!("$ promtool {}\n{text}", args.join(" "));
    (status.success(), text)
}

/// The `- alert: NAME` lines of a rules file.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn promtool_accepts_the_example_rules_and_config() {
    let Some(tools) = require_prometheus() else {
        return;
    };
    let dir = monitoring();
    let rules = std::fs::read_to_string(dir.join("qlik-alerts.yml")).expect("rules");
    let names = alert_names(&rules);
    let (ok, out) = promtool(&tools, &dir, &["check", "rules", "qlik-alerts.yml"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );

    // The example names the token file of a real installation, which this machine lacks:
    // `check config` may refuse it for that alone. Then a copy with the path swapped (to a
    // file that exists) and nothing else changed must pass.
    let token_path = "/etc/prometheus/openbao-qlik-monitoring.token";
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).expect("config");
    assert_eq!(config.matches(token_path).count(), 1, "{config}");
    let (ok, out) = promtool(&tools, &dir, &["check", "config", "prometheus.yml"]);
    if !ok {
        let refusals: Vec<&str> = out.lines().filter(|l| l.contains("FAILED")).collect();
        assert!(
            refusals.len() == 1 && refusals[0].contains(token_path),
            "check config refused the example for more than its token file: {out}"
        );
        let copy = tempfile::tempdir().expect("tempdir");
        let token = copy.path().join("monitoring.token");
        std::fs::write(&token, "hvs.example\n").expect("token");
        std::fs::write(
            copy.path().join("prometheus.yml"),
            config.replace(token_path, token.to_str().expect("path")),
        )
        .expect("config copy");
        std::fs::write(copy.path().join("qlik-alerts.yml"), &rules).expect("rules copy");
        let (ok, out) = promtool(&tools, copy.path(), &["check", "config", "prometheus.yml"]);
        assert!(ok, "{out}");
        assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
        assert!(
            out.contains(&format!("SUCCESS: {} rules found", names.len())),
            "{out}"
        );
    }
}

#[test]
fn the_alerts_unit_tests_pass_and_cover_every_alert_firing_and_not() {
    let Some(tools) = require_prometheus() else {
        return;
    };
    let dir = monitoring();
    let rules = std::fs::read_to_string(dir.join("qlik-alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("qlik-alerts.test.yml")).expect("tests");
    let names = alert_names(&rules);
    assert!(names.len() >= 5, "{names:?}");
    for name in [
        "QlikKeyChainAtRisk",
        "QlikKeyChainAtRiskExpiringSoon",
        "QlikKeyChainBroken",
        "QlikOAuthClientAtRisk",
        "QlikOAuthClientBroken",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    for name in &names {
        let quiet = format!("alertname: {name}\n        exp_alerts: []\n");
        let firing = format!(
            "alertname: {name}\n        exp_alerts:\n          - exp_labels:\n              severity: "
        );
        assert!(
            tests.contains(&quiet),
            "{name}: no case where it does not fire"
        );
        assert!(tests.contains(&firing), "{name}: no case where it fires");
    }
    let (ok, out) = promtool(&tools, &dir, &["test", "rules", "qlik-alerts.test.yml"]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn a_missing_prometheus_fails_unless_skipping_is_asked_for() {
    let found = Some(PromTools {
        prometheus: "/usr/bin/prometheus".into(),
        promtool: "/usr/bin/promtool".into(),
    });
    let decide = |bin: Option<PromTools>, required, skip_asked| {
        support::skip_or_fail_tool(
            "prometheus or promtool",
            PROMETHEUS_INSTALL,
            bin,
            required,
            skip_asked,
            Some("t"),
        )
    };
    assert_eq!(decide(found.clone(), true, false), found);
    // Skipping only when asked, and never where the tools are required (CI, REQUIRE_BAO=1).
    assert_eq!(decide(None, false, true), None);
    for (required, skip_asked) in [(false, false), (true, false), (true, true)] {
        let outcome = std::panic::catch_unwind(|| decide(None, required, skip_asked));
        let message = outcome
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| panic!("required={required} skip_asked={skip_asked}: no failure"));
        assert!(
            message.contains("prometheus or promtool not found")
                && message.contains("apt-get install -y --no-install-recommends prometheus")
                && message.contains("QLIK_SKIP_E2E=1"),
            "{message}"
        );
    }
}
