//! The `mcr` binary as an operator uses it: clear errors and non-zero exits on bad flags and
//! config; `migrate` and `index sync` against real sources.

use crate::helpers::{mcr, serve_sources};
use std::process::Command;

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("mcr runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_flags_and_config_give_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, text) = run(mcr().args(["serve", "--config", "/no/such/file.toml"]));
    assert_ne!(code, 0);
    assert!(
        text.contains("cannot read config file /no/such/file.toml"),
        "{text}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"not an address\"\n").expect("write");
    let (code, text) = run(mcr().args(["serve", "--config"]).arg(&bad));
    assert_ne!(code, 0);
    assert!(text.contains("line 1"), "says where: {text}");

    std::fs::write(
        &bad,
        "[auth]\nissuer = \"x\"\naudience = \"y\"\ned25519_public_keys = []\nsources = []\n",
    )
    .expect("write");
    let (code, _) = run(mcr().args(["migrate", "--config"]).arg(&bad));
    assert_ne!(code, 0);

    let (code, text) = run(mcr().args(["demo", "--listen", "nowhere"]));
    assert_ne!(code, 0);
    assert!(text.contains("--listen"), "{text}");
    let (code, text) = run(mcr().args(["demo", "--patients", "3"]));
    assert_ne!(code, 0);
    assert!(text.contains("--patients"), "{text}");
    let (code, text) = run(mcr()
        .args(["demo-token", "nobody", "--data-dir"])
        .arg(dir.path()));
    assert_ne!(code, 0);
    assert!(text.contains("demo.json"), "{text}");
    let (code, _) = run(mcr().arg("frobnicate"));
    assert_ne!(code, 0);
}

#[test]
fn the_example_configs_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gateway = mcr::config::Settings::load(&root.join("docs/example-gateway.toml"));
    assert!(gateway.is_ok(), "{gateway:?}");
    // Each source is asked in one batch, as the example says.
    let gateway = gateway.expect("parsed");
    assert!(
        gateway.sources.iter().all(|s| s.batch),
        "{:?}",
        gateway.sources
    );
    let acute = gateway
        .sources
        .iter()
        .find(|s| s.id.as_str() == "acute")
        .expect("the example's acute source");
    assert_eq!(
        (acute.deadline_ms, acute.feed_timeout_secs),
        (Some(5000), Some(1800))
    );
    let sources = mcr::sources_cmd::SourcesConfig::load(&root.join("docs/example-sources.toml"));
    assert!(sources.is_ok(), "{sources:?}");
}

/// `[matching] weights` is `configured` (the example's, and the default) or `estimated`;
/// anything else is refused naming the setting.
#[test]
fn the_matching_weights_are_configured_or_estimated() {
    use mcr_index::matching::WeightsMode;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example =
        std::fs::read_to_string(root.join("docs/example-gateway.toml")).expect("the example");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    let load = |text: String| {
        std::fs::write(&path, text).expect("write");
        mcr::config::Settings::load(&path)
    };
    let from = "weights = \"configured\"";
    assert!(example.contains(from), "the example names the weights");
    let configured = load(example.clone()).expect("the example");
    assert_eq!(configured.matching.weights, WeightsMode::Configured);
    let without = load(example.replacen(from, "", 1)).expect("no weights named");
    assert_eq!(without.matching.weights, WeightsMode::Configured);
    let estimated = load(example.replacen(from, "weights = \"estimated\"", 1)).expect("estimated");
    assert_eq!(estimated.matching.weights, WeightsMode::Estimated);
    let e = format!(
        "{:#}",
        load(example.replacen(from, "weights = \"guessed\"", 1)).expect_err("refused")
    );
    assert!(e.contains("guessed") && e.contains("weights"), "{e}");
}

/// A source's own deadline and feed timeout are checked like the federation's, naming the
/// source.
#[test]
fn a_sources_own_deadlines_out_of_range_are_refused_naming_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example =
        std::fs::read_to_string(root.join("docs/example-gateway.toml")).expect("the example");
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, to, says) in [
        (
            "deadline_ms = 5000",
            "deadline_ms = 0",
            "source `acute` deadline_ms must be between 1 and 60000",
        ),
        (
            "deadline_ms = 5000",
            "deadline_ms = 600000",
            "source `acute` deadline_ms must be between 1 and 60000",
        ),
        (
            "feed_timeout_secs = 1800",
            "feed_timeout_secs = 0",
            "source `acute` feed_timeout_secs must be between 1 and 86400",
        ),
    ] {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, example.replacen(from, to, 1)).expect("write");
        let e = format!("{:#}", mcr::config::Settings::load(&path).expect_err(says));
        assert!(e.contains(says), "{e}");
    }
}

/// The example's GP Connect source, uncommented, is read; a GP Connect source missing what it
/// needs, or GP Connect settings on an R4 source, are refused naming the source.
#[test]
fn a_gp_connect_source_is_configured_or_refused_saying_what_is_missing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example =
        std::fs::read_to_string(root.join("docs/example-gateway.toml")).expect("the example");
    let start = example
        .find("# [[sources]]\n# id = \"gp-riverside\"")
        .expect("the example's GP Connect source");
    let end = start + example[start..].find("\n\n").expect("its end");
    let block: Vec<&str> = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect();
    // On loopback like the example's other sources (an https one needs [sources_tls] ca).
    let with = example
        .replacen(&example[start..end], &block.join("\n"), 1)
        .replacen("https://gp.example/", "http://127.0.0.1:8105/", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let load = |text: &str| {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write");
        mcr::config::Settings::load(&path)
    };
    let settings = load(&with).expect("the GP Connect example parses");
    let gp = settings
        .sources
        .iter()
        .find(|s| s.id.as_str() == "gp-riverside")
        .expect("the GP Connect source");
    assert_eq!(gp.kind, mcr_federation::SourceKind::GpConnect);
    let gpc = gp.gp_connect.as_ref().expect("its settings");
    assert_eq!(gpc.consumer_asid, "200000000115");
    assert_eq!(
        gpc.directory.as_ref().map(|d| (d.url.as_str(), d.ttl_secs)),
        Some(("https://sds.example/spine-directory/FHIR/R4", 3600))
    );

    let refused = |text: String, says: &str| {
        let e = load(&text).expect_err(says);
        let e = format!("{e:#}");
        assert!(e.contains(says) && e.contains("gp-riverside"), "{e}");
    };
    // A missing field is named with the line it is missing from.
    let e = format!(
        "{:#}",
        load(&with.replacen("consumer_asid = \"200000000115\"\n", "", 1))
            .expect_err("no consumer ASID")
    );
    assert!(
        e.contains("consumer_asid") && e.contains("[sources.gp_connect]"),
        "{e}"
    );
    refused(
        with.replacen(
            "consumer_asid = \"200000000115\"",
            "consumer_asid = \" \"",
            1,
        ),
        "needs consumer_asid",
    );
    refused(
        with.replacen("kind = \"gp-connect\"\n", "", 1),
        "is not kind = \"gp-connect\"",
    );
    let without: String = {
        let cut = with.find("[sources.gp_connect]\n").expect("settings");
        let after = cut + with[cut..].find("\n\n").expect("end");
        format!("{}{}", &with[..cut], &with[after..])
    };
    refused(without, "set [sources.gp_connect]");
}

/// `mcr index sync` with `config`, on a blocking thread: how it ended, and the JSON report it
/// wrote on stdout.
async fn index_sync(config: &std::path::Path) -> (std::process::Output, serde_json::Value) {
    let config = config.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        mcr()
            .args(["index", "sync", "--config"])
            .arg(&config)
            .output()
    })
    .await
    .expect("join")
    .expect("mcr runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "a JSON report on stdout ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// The sources of a synthetic region of 300 patients, each served over real HTTP on its own
/// port: the handles that keep them running, and their `[[sources]]` as a gateway config
/// writes them.
async fn region_served() -> (Vec<mcr_sources::SourceHandle>, String) {
    let region = mcr_synth::generate(&mcr_synth::SynthConfig {
        patients: 300,
        ..Default::default()
    });
    let (_, handles) = serve_sources(&region, &mcr_sources::Behaviour::default()).await;
    let mut sources_toml = String::new();
    for (slice, h) in region.sources.iter().zip(&handles) {
        let o = &slice.organisation;
        sources_toml.push_str(&format!(
            "[[sources]]\nid = \"{}\"\nbase_url = \"{}\"\nresource_types = {:?}\norganisation = {{ code = \"{}\", name = \"{}\", kind = \"{}\", member = true }}\n\n",
            slice.id, h.base_url(), slice.resource_types, o.code, o.name, o.kind
        ));
    }
    (handles, sources_toml)
}

#[tokio::test]
async fn migrate_and_index_sync_against_running_sources() {
    let (mut handles, sources_toml) = region_served().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[auth]\nissuer = \"https://idp.example.nhs.uk\"\nclient_id = \"mcr-gateway\"\nclient_secret = \"s\"\n\n{sources_toml}",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let config_arg = config.clone();
    let (code, text) = tokio::task::spawn_blocking(move || {
        run(mcr().args(["migrate", "--config"]).arg(&config_arg))
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("sqlite store is up to date"), "{text}");
    let (out, report) = index_sync(&config).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gp = report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == "gp")
        .expect("gp");
    assert_eq!(gp["seen"], 300);
    // The report says which weights the matching pass used.
    assert_eq!(
        report["matching"]["weights"]["kind"], "configured",
        "{report}"
    );
    // Asked to estimate them from this small region (a few records without an NHS number), it
    // says why it could not, and that the configured weights were used.
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[matching]\nweights = \"estimated\"\n");
    std::fs::write(&config, text).expect("write config");
    let (out, report) = index_sync(&config).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weights = &report["matching"]["weights"];
    assert_eq!(weights["kind"], "configured-not-estimated", "{report}");
    assert!(
        weights["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("too few blocked pairs")),
        "{report}"
    );

    // One source down: the sync says so and exits 1, the others are still indexed.
    handles.pop().expect("a source").shutdown().await;
    let (code, text) = tokio::task::spawn_blocking(move || {
        run(mcr()
            .args(["index", "sync", "--incremental", "--config"])
            .arg(&config))
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "{text}");
}

/// A new user's way to check the demo's trail: no config, just the data directory the demo
/// ran in. The fresh trail already has a signed checkpoint (made at start-up), not only from
/// record 1,000.
#[tokio::test]
async fn audit_verify_reads_the_demos_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = mcr::demo::start(&mcr::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        patients: 200,
        ..Default::default()
    })
    .await
    .expect("demo starts");
    demo.stop().await;
    let (code, text) = run(mcr()
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{text}");
    let records: u64 = text
        .split("audit trail intact: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the count of records: {text}"));
    assert!(records >= 1, "{text}");
    let checkpoints: u64 = text
        .split("head ")
        .nth(1)
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the count of checkpoints: {text}"));
    assert!(checkpoints >= 1, "a checkpoint from start-up: {text}");
    assert!(
        !text.contains("no key configured"),
        "the demo's key is used: {text}"
    );
    // A directory the demo never ran in is an error, not an empty trail.
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, text) = run(mcr()
        .args(["audit", "verify", "--data-dir"])
        .arg(empty.path()));
    assert_ne!(code, 0);
    assert!(text.contains("mcr demo --data-dir"), "{text}");
    // One of --config and --data-dir is needed.
    let (code, _) = run(mcr().args(["audit", "verify"]));
    assert_ne!(code, 0);
}

/// The workspace's crate dependencies as `cargo metadata` reports them, one table row per
/// crate: depends on, only with the demo feature (optional), tests only (dev).
fn crate_rows(metadata: &serde_json::Value) -> Vec<String> {
    let mut packages: Vec<&serde_json::Value> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .collect();
    packages.sort_by_key(|p| p["name"].as_str().unwrap_or_default().to_owned());
    packages
        .iter()
        .map(|p| {
            let (mut normal, mut optional, mut dev) = (
                std::collections::BTreeSet::new(),
                std::collections::BTreeSet::new(),
                std::collections::BTreeSet::new(),
            );
            for d in p["dependencies"].as_array().into_iter().flatten() {
                let name = d["name"].as_str().unwrap_or_default();
                if !name.starts_with("mcr") {
                    continue;
                }
                match (d["kind"].as_str(), d["optional"].as_bool() == Some(true)) {
                    (Some("dev"), _) => dev.insert(name),
                    (None, true) => optional.insert(name),
                    (None, false) => normal.insert(name),
                    _ => false,
                };
            }
            let dev: std::collections::BTreeSet<_> = dev.difference(&normal).copied().collect();
            let list = |s: &std::collections::BTreeSet<&str>| {
                if s.is_empty() {
                    "-".to_owned()
                } else {
                    s.iter().copied().collect::<Vec<_>>().join(", ")
                }
            };
            format!(
                "| {} | {} | {} | {} |",
                p["name"].as_str().unwrap_or_default(),
                list(&normal),
                list(&optional),
                list(&dev)
            )
        })
        .collect()
}

#[test]
fn the_architecture_map_shows_every_crate_dependency() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let actual = crate_rows(&metadata);
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    let table = doc
        .split("<!-- crate-dependencies:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- crate-dependencies:end -->").next())
        .expect("the crate table's markers");
    let documented: Vec<String> = table
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("| mcr"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        documented,
        actual,
        "docs/ARCHITECTURE.md's crate table differs from the manifests; the rows should be:\n{}",
        actual.join("\n")
    );
}

/// The example's `[pds]`, uncommented, is read; a token URL off loopback without TLS, an empty
/// key id, or the fixed `access_token` that signed-JWT access replaced are refused naming
/// `[pds]` and the setting.
#[test]
fn the_example_pds_settings_are_read_or_refused_saying_what() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example =
        std::fs::read_to_string(root.join("docs/example-gateway.toml")).expect("the example");
    let start = example.find("# [pds]\n").expect("the example's [pds]");
    let end = start + example[start..].find("\n\n").expect("its end");
    let block: Vec<&str> = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect();
    let with = example.replacen(&example[start..end], &block.join("\n"), 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    let load = |text: &str| {
        std::fs::write(&path, text).expect("write");
        mcr::config::Settings::load(&path)
    };
    let pds = load(&with)
        .expect("the example's [pds]")
        .pds
        .expect("[pds]");
    assert_eq!(
        (pds.token_url.as_str(), pds.key_id.as_str()),
        ("https://int.api.service.nhs.uk/oauth2/token", "mcr-int-1")
    );
    assert_eq!(
        pds.private_key,
        std::path::Path::new("secrets/pds-jwt-key.pem")
    );
    for (from, to, says) in [
        (
            "token_url = \"https://int.api.service.nhs.uk/oauth2/token\"",
            "token_url = \"http://int.api.service.nhs.uk/oauth2/token\"",
            "config: [pds] token_url `http://int.api.service.nhs.uk/oauth2/token` must be an https:// URL (http:// only on a loopback address)",
        ),
        (
            "key_id = \"mcr-int-1\"",
            "key_id = \" \"",
            "config: [pds] key_id is empty",
        ),
        (
            "api_key = \"...\"",
            "api_key = \"...\"\naccess_token = \"fixed\"",
            "unknown field `access_token`",
        ),
    ] {
        assert!(with.contains(from), "{from}");
        let e = format!("{:#}", load(&with.replacen(from, to, 1)).expect_err(says));
        assert!(e.contains(says), "{e}");
    }
}

/// `mcr index sync` with `[pds]` whose signed JWT the platform refuses (signed with a key it
/// was never given): the records it would have traced are counted failed, the report says why
/// in the platform's words, and the command exits 1, never a quiet success.
#[tokio::test]
async fn index_sync_with_a_refused_pds_exchange_exits_1_saying_why() {
    let (_handles, sources_toml) = region_served().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // The platform knows the application by one key; the gateway signs with another.
    let registered =
        mcr::demo::pds_key::load_or_create(&dir.path().join("registered.pem")).expect("key");
    let signing = dir.path().join("signing.pem");
    mcr::demo::pds_key::load_or_create(&signing).expect("key");
    let pds = mcr_sources::pds::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        mcr_sources::pds::PdsData::demo(),
        mcr_sources::pds::PdsAccess {
            api_key: mcr::demo::pds_key::API_KEY.into(),
            jwks: registered,
            clock: std::sync::Arc::new(mcr_domain::SystemClock),
        },
    )
    .await
    .expect("PDS");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[auth]\nissuer = \"https://idp.example.nhs.uk\"\nclient_id = \"mcr-gateway\"\nclient_secret = \"s\"\n\n[pds]\nbase_url = \"{}\"\ntoken_url = \"{}\"\napi_key = \"{}\"\nkey_id = \"{}\"\nprivate_key = \"{}\"\n\n{sources_toml}",
            dir.path().join("data").display(),
            pds.base_url(),
            pds.token_url(),
            mcr::demo::pds_key::API_KEY,
            mcr::demo::pds_key::KEY_ID,
            signing.display(),
        ),
    )
    .expect("write config");
    let (out, report) = index_sync(&config).await;
    assert_eq!(out.status.code(), Some(1), "{report}");
    let traced: Vec<&serde_json::Value> = report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| &s["pds"])
        .filter(|p| p["asked"].as_u64() > Some(0))
        .collect();
    assert!(!traced.is_empty(), "some records were traced: {report}");
    for p in traced {
        assert_eq!(p["failed"], p["asked"], "{p}");
        assert_eq!(
            p["failure"],
            "the PDS token endpoint refused the signed JWT: 401 public_key error: JWT signature verification failed",
            "{p}"
        );
    }
    assert_eq!(pds.token_requests().1, 0, "no token granted");
    assert_eq!((pds.reads(), pds.searches()), (0, 0), "PDS never asked");
}
