//! The deployment files agree with the service they deploy.
//!
//! The service's own view comes from the real binary: `usersvc
//! --print-config` run with the ConfigMap's values (everything else at its
//! defaults). Against it: the Deployment's container ports, probe paths and
//! ports, `terminationGracePeriodSeconds`, the Prometheus annotations, the
//! Service, the NetworkPolicy, the kustomization, the Dockerfile's `EXPOSE`
//! and the systemd units. `problems()` is pure, so the second test shows
//! that each kind of drift is caught.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const BIN: &str = env!("CARGO_BIN_EXE_usersvc");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every file the check reads.
#[derive(Clone)]
struct Files {
    configmap: Yaml,
    deployment: Yaml,
    service: Yaml,
    networkpolicy: Yaml,
    kustomization: Yaml,
    /// Names of the YAML files in deploy/k8s.
    k8s_files: Vec<String>,
    dockerfile: String,
    systemd_service: String,
    systemd_socket: String,
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn files() -> Files {
    let mut k8s_files: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("deploy/k8s"))
        .expect("deploy/k8s")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    k8s_files.sort();
    Files {
        configmap: yaml("deploy/k8s/configmap.yaml"),
        deployment: yaml("deploy/k8s/deployment.yaml"),
        service: yaml("deploy/k8s/service.yaml"),
        networkpolicy: yaml("deploy/k8s/networkpolicy.yaml"),
        kustomization: yaml("deploy/k8s/kustomization.yaml"),
        k8s_files,
        dockerfile: read("Dockerfile"),
        systemd_service: read("deploy/systemd/usersvc.service"),
        systemd_socket: read("deploy/systemd/usersvc.socket"),
    }
}

/// `usersvc --print-config` with `env` (and a placeholder DATABASE_URL).
fn effective_config(env: &BTreeMap<String, String>) -> Json {
    let out = Command::new(BIN)
        .arg("--print-config")
        .env_clear()
        .envs(env)
        .env("DATABASE_URL", "postgres://u@db.invalid:5432/usersvc")
        .output()
        .expect("run usersvc --print-config");
    assert!(
        out.status.success(),
        "--print-config refused {env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--print-config prints JSON")
}

fn configmap_env(f: &Files) -> BTreeMap<String, String> {
    f.configmap["data"]
        .as_mapping()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("key").to_owned(),
                v.as_str().expect("ConfigMap values are strings").to_owned(),
            )
        })
        .collect()
}

/// `500ms`, `2s`, `1m`, `1h` as printed by --print-config.
fn duration(v: &Json) -> Duration {
    let s = v.as_str().expect("a duration string");
    let split = s.find(|c: char| !c.is_ascii_digit()).expect("a unit");
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().expect("a number");
    match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => panic!("unit {other}"),
    }
}

fn port_of(addr: &Json) -> Option<i64> {
    addr.as_str()?.rsplit_once(':')?.1.parse().ok()
}

/// Pure: every way the files disagree with `config` (the binary's effective
/// configuration under the ConfigMap) and `defaults` (with no settings).
fn problems(f: &Files, config: &Json, defaults: &Json) -> Vec<String> {
    let mut p = Vec::new();
    let public = port_of(&config["ADDR"]);
    let admin = port_of(&config["ADMIN_ADDR"]);
    if admin.is_none() {
        p.push("ADMIN_ADDR is off: nothing to scrape".to_owned());
    }

    let pod = &f.deployment["spec"]["template"];
    let containers = pod["spec"]["containers"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let Some(c) = containers.first() else {
        p.push("the Deployment has no container".into());
        return p;
    };
    let mut named = BTreeMap::new();
    for port in c["ports"].as_sequence().cloned().unwrap_or_default() {
        if let (Some(n), Some(num)) = (port["name"].as_str(), port["containerPort"].as_i64()) {
            named.insert(n.to_owned(), num);
        }
    }
    if named.get("http").copied() != public {
        p.push(format!(
            "containerPort http {:?} != ADDR port {public:?}",
            named.get("http")
        ));
    }
    if named.get("admin").copied() != admin {
        p.push(format!(
            "containerPort admin {:?} != ADMIN_ADDR port {admin:?}",
            named.get("admin")
        ));
    }
    let resolve = |port: &Yaml| -> Option<i64> {
        port.as_i64().or_else(|| named.get(port.as_str()?).copied())
    };
    for (probe, path) in [
        ("startupProbe", "/startupz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &c[probe]["httpGet"];
        if get["path"].as_str() != Some(path) {
            p.push(format!(
                "{probe} path {:?}, the service serves {path}",
                get["path"]
            ));
        }
        // Probes are answered on both listeners; the public one is always on.
        let port = resolve(&get["port"]);
        if port != public && port != admin {
            p.push(format!(
                "{probe} port {port:?} is neither ADDR ({public:?}) nor ADMIN_ADDR ({admin:?})"
            ));
        }
    }
    let annotations = &pod["metadata"]["annotations"];
    if annotations["prometheus.io/port"]
        .as_str()
        .and_then(|s| s.parse().ok())
        != admin
    {
        p.push(format!(
            "prometheus.io/port {:?} != ADMIN_ADDR port {admin:?}",
            annotations["prometheus.io/port"]
        ));
    }
    if annotations["prometheus.io/path"].as_str() != Some("/metrics") {
        p.push("prometheus.io/path is not /metrics".into());
    }

    // The grace period: what the binary checks against, and enough for the drain.
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_u64();
    let tgp = duration(&config["TERMINATION_GRACE_PERIOD"]).as_secs();
    let budget = duration(&config["DRAIN_DELAY"]) + duration(&config["SHUTDOWN_TIMEOUT"]);
    if grace != Some(tgp) {
        p.push(format!(
            "terminationGracePeriodSeconds {grace:?} != TERMINATION_GRACE_PERIOD {tgp}s"
        ));
    }
    if grace.is_none_or(|g| Duration::from_secs(g) < budget + Duration::from_secs(2)) {
        p.push(format!(
            "terminationGracePeriodSeconds {grace:?} < DRAIN_DELAY + SHUTDOWN_TIMEOUT + 2s ({:?})",
            budget + Duration::from_secs(2)
        ));
    }

    // The Service: the public port only.
    let svc_ports = f.service["spec"]["ports"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    for sp in &svc_ports {
        let target = resolve(&sp["targetPort"]);
        if target != public {
            p.push(format!(
                "Service targets port {target:?}, not the public port {public:?}"
            ));
        }
    }
    if svc_ports.is_empty() {
        p.push("the Service has no port".into());
    }

    // The NetworkPolicy: the admin port only from a selected scraper.
    let mut admin_rules = 0;
    for rule in f.networkpolicy["spec"]["ingress"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
    {
        for port in rule["ports"].as_sequence().cloned().unwrap_or_default() {
            if resolve(&port["port"]) == admin {
                admin_rules += 1;
                if rule["from"].as_sequence().is_none_or(|f| f.is_empty()) {
                    p.push("the NetworkPolicy opens the admin port to everyone".into());
                }
            }
        }
    }
    if admin_rules == 0 {
        p.push("the NetworkPolicy does not let the scraper reach the admin port".into());
    }

    // The kustomization lists every manifest but the Secret example.
    let listed: Vec<String> = f.kustomization["resources"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for file in &f.k8s_files {
        let expected = !matches!(file.as_str(), "kustomization.yaml" | "secret.example.yaml");
        if expected != listed.contains(file) {
            p.push(format!(
                "kustomization.yaml: {file} listed = {}",
                listed.contains(file)
            ));
        }
    }

    // The image exposes both default ports.
    let default_public = port_of(&defaults["ADDR"]);
    let exposed: Vec<i64> = f
        .dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()))
        .collect();
    for want in [default_public, admin] {
        if !want.is_some_and(|w| exposed.contains(&w)) {
            p.push(format!("Dockerfile EXPOSE lacks {want:?}"));
        }
    }

    // systemd: the sockets on the default ports, the stop timeout fits the drain.
    let sockets: Vec<&str> = f
        .systemd_socket
        .lines()
        .filter_map(|l| l.strip_prefix("ListenStream="))
        .collect();
    let socket_port = |i: usize| {
        sockets
            .get(i)
            .and_then(|s| s.rsplit(':').next()?.parse::<i64>().ok())
    };
    if socket_port(0) != default_public || socket_port(1) != port_of(&defaults["ADMIN_ADDR"]) {
        p.push(format!(
            "usersvc.socket listens on {sockets:?}, the defaults are ADDR {:?} and ADMIN_ADDR {:?}",
            defaults["ADDR"], defaults["ADMIN_ADDR"]
        ));
    }
    let unit_env: BTreeMap<String, String> = f
        .systemd_service
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let drain = unit_env
        .get("DRAIN_DELAY")
        .map(|v| duration(&Json::from(v.as_str())));
    let shutdown = unit_env
        .get("SHUTDOWN_TIMEOUT")
        .map(|v| duration(&Json::from(v.as_str())));
    let stop = f
        .systemd_service
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (drain, shutdown, stop) {
        (Some(d), Some(s), Some(stop)) if Duration::from_secs(stop) >= d + s + Duration::from_secs(2) => {}
        other => p.push(format!("usersvc.service: TimeoutStopSec does not cover DRAIN_DELAY + SHUTDOWN_TIMEOUT + 2s: {other:?}")),
    }
    p
}

#[test]
fn manifests_agree_with_the_service_defaults() {
    let f = files();
    let config = effective_config(&configmap_env(&f));
    let defaults = effective_config(&BTreeMap::new());
    let found = problems(&f, &config, &defaults);
    assert!(
        found.is_empty(),
        "deploy files disagree with the service:\n{}",
        found.join("\n")
    );
}

fn container(f: &mut Files) -> &mut Yaml {
    &mut f.deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn each_kind_of_drift_is_caught() {
    let f = files();
    let config = effective_config(&configmap_env(&f));
    let defaults = effective_config(&BTreeMap::new());

    // The grace period shorter than the ConfigMap's drain + timeout.
    let mut g = f.clone();
    g.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = Yaml::from(20);
    let found = problems(&g, &config, &defaults);
    assert!(
        found
            .iter()
            .any(|p| p.contains("terminationGracePeriodSeconds")),
        "{found:?}"
    );

    // A probe on a path the service does not serve.
    let mut g = f.clone();
    container(&mut g)["readinessProbe"]["httpGet"]["path"] = Yaml::from("/ready");
    let found = problems(&g, &config, &defaults);
    assert!(
        found.iter().any(|p| p.contains("readinessProbe path")),
        "{found:?}"
    );

    // A container port that is not the one the service binds.
    let mut g = f.clone();
    container(&mut g)["ports"][0]["containerPort"] = Yaml::from(8081);
    let found = problems(&g, &config, &defaults);
    assert!(
        found.iter().any(|p| p.contains("containerPort http")),
        "{found:?}"
    );

    // The ConfigMap moving the public port without the Deployment following.
    let mut env = configmap_env(&f);
    env.insert("ADDR".into(), "0.0.0.0:8000".into());
    let moved = effective_config(&env);
    let found = problems(&f, &moved, &defaults);
    assert!(
        found.iter().any(|p| p.contains("!= ADDR port")),
        "{found:?}"
    );

    // The systemd stop timeout shorter than the drain.
    let mut g = f.clone();
    g.systemd_service = g
        .systemd_service
        .replace("TimeoutStopSec=30", "TimeoutStopSec=10");
    let found = problems(&g, &config, &defaults);
    assert!(
        found.iter().any(|p| p.contains("TimeoutStopSec")),
        "{found:?}"
    );
}
