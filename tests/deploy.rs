//! The deployment files: docker-compose.yml and the Dockerfile reference only files
//! that exist, and the keypin configuration compose mounts is valid.

use std::path::{Path, PathBuf};

use keypin::config::{Config, CredentialConfig, SESSION_KEYS_ENV, SecretBackend};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    serde_saphyr::from_str(&text).expect("docker-compose.yml parses")
}

/// `(source, target)` of a service's bind mounts (`./src:/target[:ro]`).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn every_file_compose_references_exists() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for name in ["keypin", "keypin-2", "redis", "lowkey-vault", "seed", "demo-app", "certs"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    assert!(services["lowkey-vault"]["image"].as_str().unwrap().starts_with("nagyesta/lowkey-vault"));
    let named: Vec<&String> = compose["volumes"].as_object().map(|v| v.keys().collect()).unwrap_or_default();
    for (name, service) in services {
        if let Some(build) = service.get("build") {
            let context = build.as_str().or_else(|| build["context"].as_str()).unwrap();
            assert!(root().join(context).join("Dockerfile").is_file(), "{name}: no Dockerfile in {context}");
        }
        for (source, _) in bind_mounts(service) {
            assert!(root().join(&source).exists(), "{name}: {source} does not exist");
        }
        for volume in service["volumes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !volume.starts_with("./") {
                let volume_name = volume.split(':').next().unwrap();
                assert!(named.iter().any(|n| *n == volume_name), "{name}: volume {volume_name} not declared");
            }
        }
        for dependency in service["depends_on"].as_object().into_iter().flat_map(|d| d.keys()) {
            assert!(services.contains_key(dependency), "{name} depends on unknown {dependency}");
        }
    }
}

#[test]
fn the_config_compose_mounts_passes_check_config() {
    let compose = compose();
    let keypin = &compose["services"]["keypin"];
    let (source, _) = bind_mounts(keypin)
        .into_iter()
        .find(|(_, target)| target == "/etc/keypin/keypin.toml")
        .expect("keypin mounts its config");
    let environment = keypin["environment"].as_object().unwrap();
    let key = keypin::config::SessionKey::generate().to_base64().to_string();
    let env = |name: &str| {
        if name == SESSION_KEYS_ENV {
            return Some(key.clone());
        }
        environment.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let text = std::fs::read_to_string(root().join(&source)).unwrap();
    let config = Config::parse(&text, &source, &env).unwrap_or_else(|e| panic!("{e}"));
    let SecretBackend::KeyVault(kv) = &config.secrets.backend else { panic!("compose uses Key Vault") };
    assert!(matches!(kv.credential, CredentialConfig::StaticToken { .. }));
    assert_eq!(kv.vault_url.host(), Some("lowkey-vault"));
    assert_eq!(config.routes[0].upstream.as_ref().unwrap().to_string(), "http://demo-app:8080");
    // The files it names come from the compose `certs` volume.
    let cert_mount =
        keypin["volumes"].as_array().unwrap().iter().filter_map(Value::as_str).any(|v| v == "certs:/certs:ro");
    assert!(cert_mount && kv.ca_cert.as_deref() == Some(Path::new("/certs/ca.pem")));
}

#[test]
fn the_dockerfile_copies_files_that_exist() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut copies = 0;
    for line in text.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(root().join(source).exists(), "Dockerfile copies missing {source}");
            copies += 1;
        }
    }
    assert!(copies >= 5, "the Dockerfile copies the sources");
    assert!(text.contains("USER nonroot"), "the image runs as non-root");
}

/// The environment a keypin container of the examples sees: its Secret's keys,
/// and the admin address made from the pod's IP (loopback stands in for it here:
/// the configuration is only parsed, and tests reach nothing else).
fn pod_env(name: &str) -> Option<String> {
    match name {
        SESSION_KEYS_ENV | "KEYPIN_PIN_KEY" => Some(keypin::config::SessionKey::generate().to_base64().to_string()),
        "KEYPIN_ADMIN_LISTEN" => Some("127.0.0.1:9443".into()),
        _ => None,
    }
}

/// Every Kubernetes document in `deploy/kubernetes/`, parsed.
fn kubernetes_documents() -> Vec<(String, Value)> {
    let dir = root().join("deploy/kubernetes");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()).map(|d| (name.clone(), d)));
    }
    assert!(docs.len() >= 8, "the sidecar and gateway examples");
    docs
}

#[test]
fn kubernetes_examples_carry_valid_documented_configs_and_probe_the_admin_port() {
    let docs = kubernetes_documents();
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let mut configs = std::collections::HashMap::new();
    for (file, doc) in docs.iter().filter(|(_, d)| d["kind"] == "ConfigMap") {
        let text = doc["data"]["keypin.toml"].as_str().expect("keypin.toml in the ConfigMap");
        let config = Config::parse(text, file, &pod_env).unwrap_or_else(|e| panic!("{e}"));
        // A production example passes its own check with no security warning.
        let warnings = keypin::ops::check::warnings_with_env(&config, &|_| None);
        assert!(warnings.is_empty(), "{file}: {warnings:#?}");
        // Every key the example uses is in the configuration reference.
        let table: toml::Table = text.parse().unwrap();
        for (section, value) in &table {
            let keys: Vec<&String> = match value {
                toml::Value::Table(t) => t.keys().collect(),
                toml::Value::Array(routes) => {
                    routes.iter().filter_map(|r| r.as_table()).flat_map(|t| t.keys()).collect()
                }
                _ => vec![],
            };
            for key in keys {
                assert!(reference.contains(&format!("`{key}`")), "{file}: {section}.{key} is not documented");
            }
        }
        configs.insert(doc["metadata"]["name"].as_str().unwrap().to_owned(), config);
    }
    assert_eq!(configs.len(), 2);

    let keypin_container = |d: &Value| {
        d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "keypin").cloned()
    };
    for (file, deployment) in docs.iter().filter(|(_, d)| d["kind"] == "Deployment") {
        let spec = &deployment["spec"]["template"]["spec"];
        let Some(container) = keypin_container(deployment) else {
            continue;
        };
        let args: Vec<&str> = container["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(args[0], "serve", "{file}");
        let config_map = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v["configMap"]["name"].as_str())
            .expect("the config comes from a ConfigMap");
        let config = &configs[config_map];
        let admin_port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "admin")
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap();
        assert_eq!(u64::from(config.server.admin_listen.port()), admin_port, "{file}: probes hit the admin listener");
        // The admin listener is on the pod's address, where the kubelet probes.
        let env = container["env"].as_array().expect("env");
        let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{file}: {name}"));
        assert_eq!(var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP", "{file}");
        assert_eq!(var("KEYPIN_ADMIN_LISTEN")["value"], "$(POD_IP):9443", "{file}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(matches!(config.secrets.backend, SecretBackend::KeyVault(_)), "{file}: production uses Key Vault");
        assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true");
        // Mounted as a directory, which Kubernetes updates in place (live reload),
        // and the --config path lies in it.
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().all(|m| m.get("subPath").is_none()), "{file}: a subPath is never updated");
        let config_dir = mounts.iter().find(|m| m["name"] == "config").unwrap()["mountPath"].as_str().unwrap();
        assert!(args.iter().any(|a| a.starts_with(config_dir)), "{file}: --config inside {config_dir}");
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        assert!(
            replicas == 1 || config.limits.store != keypin::config::LimitStoreKind::Memory,
            "{file}: {replicas} replicas must share their limits (limits.store = redis://…)"
        );
    }
}

#[test]
fn the_ingress_examples_ask_keypins_auth_path_and_pass_only_its_identity() {
    let dir = root().join("deploy/ingress");
    let traefik: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join("traefik.yml")).unwrap()).unwrap();
    let auth = &traefik["http"]["middlewares"]["keypin-auth"]["forwardAuth"];
    assert!(auth["address"].as_str().unwrap().ends_with("/.keypin/auth"));
    assert_eq!(auth["trustForwardHeader"], false, "Traefik must not believe a client's X-Forwarded-*");
    let copied: Vec<&str> = auth["authResponseHeaders"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(copied, ["Authorization", "X-Forwarded-User"]);
    assert_eq!(auth["addAuthCookiesToResponse"][0], "__Host-keypin");
    let app = &traefik["http"]["routers"]["app"];
    assert!(app["middlewares"].as_array().unwrap().iter().any(|m| m == "keypin-auth"));

    for (file, needle) in [("nginx.conf", "auth_request /.keypin-auth;"), ("Caddyfile", "uri /.keypin/auth")] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(needle), "{file}");
        assert!(text.contains("/.keypin/"), "{file}: keypin's pages on the app's host");
    }
    let ingress = std::fs::read_to_string(root().join("deploy/kubernetes/ingress-nginx.yaml")).unwrap();
    assert!(ingress.contains("/.keypin/auth") && ingress.contains("auth-response-headers"));
}

#[test]
fn the_sidecar_keeps_its_admin_port_private() {
    let docs = kubernetes_documents();
    let (_, policy) = docs
        .iter()
        .find(|(file, d)| file == "sidecar.yaml" && d["kind"] == "NetworkPolicy")
        .expect("the sidecar example has a NetworkPolicy");
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    for rule in rules {
        let ports: Vec<u64> = rule["ports"].as_array().unwrap().iter().filter_map(|p| p["port"].as_u64()).collect();
        if ports.contains(&9443) {
            assert!(rule["from"].as_array().is_some_and(|f| !f.is_empty()), "the admin port only from named peers");
        }
    }
    assert!(rules.iter().any(|r| r.get("from").is_none() && r["ports"][0]["port"] == 8443), "TLS open");
}
