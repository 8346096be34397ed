//! `portvakt check-config`: a bad config stops start-up with the file, the key and the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

mod common;

use std::process::Command;

use common::*;

fn check(config: &str, files: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let path = dir.path().join("portvakt.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(binary()).args(["check-config", "--config"]).arg(&path).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        path.display().to_string(),
    )
}

const MINIMAL: &str = r#"
[admin]
listen = "127.0.0.1:19901"

[gateway]
listen = "127.0.0.1:18080"

[[gateway.issuers]]
issuer = "https://issuer.example"
jwks_url = "https://issuer.example/jwk"

[[gateway.routes]]
name = "api"
path = "/api"
upstreams = ["http://127.0.0.1:18081"]
"#;

#[test]
fn a_good_config_passes_and_the_default_config_is_good() {
    let (code, stderr, _) = check(MINIMAL, &[]);
    assert_eq!(code, 0, "{stderr}");
    let output = Command::new(binary()).args(["check-config"]).current_dir(project_path("")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn each_kind_of_mistake_names_the_file_the_key_and_the_reason() {
    let cases = [
        (
            MINIMAL.replace("[gateway]\n", "[gateway]\nnonsense = 1\n"),
            "key `gateway.nonsense`",
            "unknown field `nonsense`",
        ),
        (format!("[server]\nthreads = \"two\"\n{MINIMAL}"), "key `server.threads`", "expected usize"),
        (
            MINIMAL.replace("jwks_url = \"https://issuer.example/jwk\"", "jwks_file = \"missing.json\""),
            "key `gateway.issuers[0].jwks_file`",
            "does not exist",
        ),
        (
            MINIMAL.replace("https://issuer.example/jwk", "not a url"),
            "key `gateway.issuers[0].jwks_url`",
            "relative URL without a base",
        ),
        (
            MINIMAL.replace("ftp://", "").replace("http://127.0.0.1:18081", "ftp://127.0.0.1:18081"),
            "key `gateway.routes[0].upstreams[0]`",
            "scheme \"ftp\"",
        ),
        (MINIMAL.replace("path = \"/api\"", "path = \"/api/../x\""), "key `gateway.routes[0].path`", "dot segment"),
        (
            MINIMAL.replace(
                "upstreams = [\"http://127.0.0.1:18081\"]",
                "upstreams = [\"http://no-such-host.invalid:80\"]",
            ),
            "key `gateway.routes[0].upstreams[0]`",
            "cannot resolve",
        ),
        (
            format!(
                "{MINIMAL}\n[[gateway.routes]]\nname = \"api\"\npath = \"/x\"\nupstreams = [\"http://127.0.0.1:1\"]\n"
            ),
            "key `gateway.routes[1].name`",
            "defined twice",
        ),
        (
            MINIMAL.replace("listen = \"127.0.0.1:18080\"", "listen = \"127.0.0.1:19901\""),
            "key `gateway.listen`",
            "already used by admin.listen",
        ),
        (
            MINIMAL.replace("algorithms", "x").replace(
                "jwks_url = \"https://issuer.example/jwk\"",
                "jwks_url = \"https://issuer.example/jwk\"\nalgorithms = [\"HS256\"]",
            ),
            "key `gateway.issuers[0].algorithms",
            "HMAC",
        ),
        (
            MINIMAL.replace("[gateway]\n", "[gateway.forward]\nstrip = [\"x-a\", \"Content-Length\"]\n\n[gateway]\n"),
            "key `gateway.forward.strip[1]`",
            "frames the message",
        ),
        (
            MINIMAL.replace("[gateway]\n", "[gateway.forward]\npid = \"transfer-encoding\"\n\n[gateway]\n"),
            "key `gateway.forward.pid`",
            "reserved header",
        ),
        (
            MINIMAL.replace("path = \"/api\"", "path = \"/api\"\nmethods = [\"GET\", \"post\"]"),
            "key `gateway.routes[0].methods[1]`",
            "is not an upper-case HTTP method",
        ),
        (
            MINIMAL.replace("[gateway]\n", "[gateway.forward]\nscope = \"x scope\"\n\n[gateway]\n"),
            "key `gateway.forward.scope`",
            "is not a valid header name",
        ),
        (
            MINIMAL.replace(
                "jwks_url = \"https://issuer.example/jwk\"",
                "jwks_url = \"https://issuer.example/jwk\"\njwks_file = \"keys.json\"",
            ),
            "key `gateway.issuers[0]`",
            "only one of jwks_url, discovery_url and jwks_file",
        ),
        (
            MINIMAL.replace("jwks_url = \"https://issuer.example/jwk\"", ""),
            "key `gateway.issuers[0]`",
            "give a key source",
        ),
        (
            MINIMAL.replace("path = \"/api\"", "path = \"/api\"\nhandler = \"krr-person\""),
            "key `gateway.routes[0]`",
            "either upstreams or handler, not both",
        ),
        (
            MINIMAL.replace("upstreams = [\"http://127.0.0.1:18081\"]", "upstreams = []"),
            "key `gateway.routes[0]`",
            "give upstreams (or a handler)",
        ),
        (
            format!("[server]\nrequest_head_timeout_ms = 0\n{MINIMAL}"),
            "key `server.request_head_timeout_ms`",
            "between 100 and 300000",
        ),
    ];
    // Parsed in-process (the fast layer); the binary's own report is checked once below.
    for (config, key, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portvakt.toml");
        std::fs::write(&path, config).unwrap();
        let errors = match portvakt::config::Config::load(&path) {
            Ok(_) => panic!("{key}: the config was accepted"),
            Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        };
        assert!(errors.contains(&path.display().to_string()), "names the file: {errors}");
        assert!(errors.contains(key), "names {key}: {errors}");
        assert!(errors.contains(reason), "says {reason}: {errors}");
    }
    let (code, stderr, path) = check(&MINIMAL.replace("[gateway]\n", "[gateway]\nnonsense = 1\n"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&path) && stderr.contains("key `gateway.nonsense`"), "{stderr}");
}

#[test]
fn a_production_config_refuses_development_material_and_inline_secrets() {
    let dev = project_path("config/dev");
    let config = format!(
        "[server]\nenvironment = \"production\"\n{}\n[[gateway.issuers]]\nissuer = \"x\"\njwks_file = \"{}/../portvakt.toml\"\nintrospection = {{ url = \"http://10.1.2.3/tokeninfo\", client_id = \"gw\", client_secret = \"inline\" }}\n",
        MINIMAL,
        dev.display()
    );
    let (code, stderr, _) = check(&config, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("inline"), "{stderr}");
    assert!(stderr.contains("must use https"), "{stderr}");
    let dev_key = format!(
        "[server]\nenvironment = \"production\"\n{}\n[[gateway.issuers]]\nissuer = \"y\"\njwks_file = \"{}/pairwise.secret\"\n",
        MINIMAL,
        dev.display()
    );
    let (code, stderr, _) = check(&dev_key, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("development material"), "{stderr}");
}

#[test]
fn the_production_example_is_well_formed() {
    // Its TLS files, audit key, KRR certificates and upstream hosts do not exist here; everything
    // else must check out.
    let output = Command::new(binary())
        .args(["check-config", "--config", "config/examples/production.toml"])
        .current_dir(project_path(""))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        assert!(
            line.contains("gateway.tls")
                || line.contains("audit.hmac_key")
                || line.contains("gateway.krr.ws_security.")
                || line.contains("cannot resolve"),
            "an unexpected complaint about the example: {line}"
        );
    }
}

#[test]
fn a_production_config_refuses_the_built_in_test_idp() {
    // An issuer that is production-shaped in every other way: https, its own key and secret.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap().serialize_pem();
    let files = [
        ("issuer.key.pem", key.as_str()),
        ("pairwise.secret", "a-production-pairwise-secret"),
        ("audit.secret", "a-production-audit-key"),
    ];
    let issuer = |environment: &str, idp: &str| {
        format!(
            "[server]\nenvironment = \"{environment}\"\n\n[admin]\nlisten = \"127.0.0.1:19901\"\n\n[issuer]\n\
             listen = \"127.0.0.1:19000\"\nissuer = \"https://login.example.no\"\n\
             pairwise_secret = {{ file = \"pairwise.secret\" }}\nclients = []\n{idp}\n\
             [[issuer.signing_keys]]\nprivate_key = \"issuer.key.pem\"\nsigning = true\n\n\
             [audit]\ndir = \"audit\"\nhmac_key = {{ file = \"audit.secret\" }}\n"
        )
    };
    let (code, stderr, _) = check(&issuer("development", ""), &files);
    assert_eq!(code, 0, "the same issuer is fine outside production: {stderr}");
    for idp in ["", "idp = \"test\""] {
        let (code, stderr, path) = check(&issuer("production", idp), &files);
        assert_eq!(code, 2, "{idp:?}: {stderr}");
        assert!(stderr.contains(&path), "names the file: {stderr}");
        assert!(stderr.contains("key `issuer.idp`"), "names the key: {stderr}");
        assert!(stderr.contains("test IdP") && stderr.contains("anyone"), "says why: {stderr}");
        assert_eq!(stderr.lines().filter(|l| l.contains("key `")).count(), 1, "nothing else is wrong: {stderr}");
    }
    let (code, stderr, _) = check(&issuer("production", "idp = \"saml\""), &files);
    assert_eq!(code, 2);
    assert!(stderr.contains("key `issuer.idp`") && stderr.contains("unknown variant"), "{stderr}");
}

#[test]
fn a_production_config_that_looks_up_personal_data_keeps_an_audit_trail() {
    let krr = "[gateway.krr]\nsoap_endpoint = \"https://kontaktinfo.example/ws\"\n";
    let config = format!("[server]\nenvironment = \"production\"\n{MINIMAL}{krr}");
    let (code, stderr, _) = check(&config, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("key `audit`") && stderr.contains("audit trail"), "{stderr}");
    let with_audit = format!("{config}\n[audit]\ndir = \"audit\"\nhmac_key = {{ file = \"audit.secret\" }}\n");
    let (_, stderr, _) = check(&with_audit, &[("audit.secret", "a-production-audit-key")]);
    assert!(!stderr.contains("key `audit`"), "{stderr}");
}

#[test]
fn the_two_instance_example_is_well_formed_and_shares_one_issuer() {
    let mut identifiers = Vec::new();
    for name in ["a", "b"] {
        let config = portvakt::config::Config::load(&project_path(&format!("config/examples/cluster/{name}.toml")))
            .unwrap_or_else(|errors| panic!("{name}.toml: {errors:?}"));
        let issuer = config.issuer.expect("an issuer");
        assert!(issuer.store.redis.is_some(), "{name}.toml keeps its state in Redis");
        identifiers.push(issuer.issuer);
    }
    assert_eq!(identifiers, ["http://127.0.0.1:19000", "http://127.0.0.1:19000"]);
}

#[test]
fn ws_security_settings_are_checked() {
    let krr = "\n[gateway.krr]\nsoap_endpoint = \"http://127.0.0.1:9100/kontaktinfo-external/ws-v5\"\n";
    let production = format!("[server]\nenvironment = \"production\"\n{MINIMAL}{krr}");
    let (code, stderr, _) = check(&production, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("gateway.krr.ws_security") && stderr.contains("only signed requests"), "{stderr}");
    let dev = project_path("config/dev");
    let missing = format!(
        "{MINIMAL}{krr}[gateway.krr.ws_security]\ncertificate = \"{0}/krr-facade.cert.pem\"\nkey = \"{0}/nothing.pem\"\nservice_certificate = \"{0}/oppslag-server.cert.pem\"\n",
        dev.display()
    );
    let (code, stderr, _) = check(&missing, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("gateway.krr.ws_security.key") && stderr.contains("nothing.pem"), "{stderr}");
    let simulator = |ws: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:19901\"\n[oppslag]\nlisten = \"127.0.0.1:19100\"\nregister = \"{}\"\n[oppslag.ws_security]\n{ws}certificate = \"{1}/oppslag-server.cert.pem\"\nkey = \"{1}/oppslag-server.key.pem\"\n",
            project_path("config/register.json").display(),
            dev.display()
        )
    };
    let (code, stderr, _) = check(&simulator("mode = \"required\"\ntrusted_cas = []\n"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("oppslag.ws_security.trusted_cas"), "{stderr}");
    let (code, stderr, _) = check(&simulator("mode = \"sometimes\"\ntrusted_cas = []\n"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("oppslag.ws_security.mode") && stderr.contains("sometimes"), "{stderr}");
}
