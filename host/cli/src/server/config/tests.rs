//! Unit tests of the config loader: every field's errors and defaults.

use std::path::Path;
use std::time::Duration;

use toml::Value;

use storage_host::config::StorageConfig;
use storage_host::manager::DEFAULT_OP_TIMEOUT;
use storage_host::policy::StoragePolicy;

use super::error::Result;
use super::units::{parse_duration, parse_size};
use super::*;

fn parse(s: &str) -> Result<HostConfig> {
    HostConfig::from_toml_str(s, Path::new("/tmp"))
}

fn field_of(s: &str) -> String {
    match parse(s) {
        Ok(_) => panic!("accepted:\n{s}"),
        Err(e) => e
            .field()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

const MEM: &str = "[[backends]]\nname = \"m\"\nstorage_config = { type = \"local\" }\n";

#[test]
fn defaults() {
    let c = parse(MEM).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(c.op_timeout, DEFAULT_OP_TIMEOUT);
    assert!(c.auth.token.is_none() && c.policy.is_none() && c.plugins_dir.is_none());
    assert_eq!(
        c.backends[0].storage_config,
        StorageConfig::Local { path: None }
    );
    assert!(c.backends[0].enabled);
}

#[test]
fn full() {
    let c = parse(
        r#"
        listen = "0.0.0.0:0"
        log_level = "storage_host=debug,warn"
        max_body_size = "1MiB"
        op_timeout = "250ms"
        shutdown_timeout = "5ms"

        [policy]
        type = "prefer_cache"
        cache = "m"
        primary = "d"

        [[backends]]
        name = "m"
        storage_config = { type = "local" }

        [[backends]]
        name = "d"
        priority = 2
        enabled = false
        [backends.storage_config]
        type = "local"
        path = "data"

        [[backends]]
        name = "r"
        [backends.storage_config]
        type = "custom"
        plugin_name = "redis"
        config = { url = "redis://127.0.0.1:6379", ttl = 5, nested = { a = [1, 2.5] } }
        "#,
    )
    .unwrap();
    assert_eq!(c.max_body_bytes, 1 << 20);
    assert_eq!(c.op_timeout, Duration::from_millis(250));
    assert_eq!(c.shutdown_timeout, Duration::from_millis(5));
    assert_eq!(
        c.policy,
        Some(StoragePolicy::PreferCache {
            cache: "m".into(),
            primary: "d".into()
        })
    );
    assert_eq!(
        c.backends[1].storage_config,
        StorageConfig::Local {
            path: Some("/tmp/data".into())
        }
    );
    assert!(!c.backends[1].enabled);
    assert_eq!(c.backends[1].priority, 2);
    assert_eq!(
        c.backends[2].storage_config,
        StorageConfig::Custom {
            plugin_name: "redis".into(),
            config: serde_json::json!({"url": "redis://127.0.0.1:6379", "ttl": 5, "nested": {"a": [1, 2.5]}}),
        }
    );
}

#[test]
fn errors_name_the_field() {
    assert_eq!(field_of("listen = \"nowhere\"\n"), "listen");
    assert_eq!(field_of(&format!("log_level = \"[\"\n{MEM}")), "log_level");
    assert_eq!(
        field_of(&format!("max_body_size = \"4 parsecs\"\n{MEM}")),
        "max_body_size"
    );
    assert_eq!(
        field_of(&format!("op_timeout = \"0s\"\n{MEM}")),
        "op_timeout"
    );
    assert_eq!(
        field_of(&format!("plugins_dir = \"/nonexistent-s8\"\n{MEM}")),
        "plugins_dir"
    );
    assert_eq!(field_of(&format!("listne = \"x\"\n{MEM}")), "listne");
    assert_eq!(field_of(""), "backends");
    assert_eq!(
        field_of("[[backends]]\nstorage_config = { type = \"local\" }\n"),
        "backends[0].name"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[[backends]]\nname = \"m\"\nstorage_config = {{ type = \"local\" }}\n"
        )),
        "backends[1].name"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", path = 5 }}\n"
        )),
        "backends[1].storage_config.path"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", path = \"\" }}\n"
        )),
        "backends[1].storage_config.path"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"locl\" }}\n"
        )),
        "backends[1].storage_config.type"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[[backends]]\nname = \"x\"\nstorage_config = {{ type = \"local\", pth = \"a\" }}\n"
        )),
        "backends[1].storage_config.pth"
    );
    assert_eq!(
        field_of(
            "[[backends]]\nname = \"x\"\npriority = -1\nstorage_config = { type = \"local\" }\n"
        ),
        "backends[0].priority"
    );
    assert_eq!(
        field_of("[[backends]]\nname = \"a b\"\nstorage_config = { type = \"local\" }\n"),
        "backends[0].name"
    );
    assert_eq!(
        field_of(
            "[[backends]]\nname = \"a\"\nstorage_config = { type = \"local\", path = \"d\" }\n[[backends]]\nname = \"b\"\nstorage_config = { type = \"local\", path = \"d\" }\n"
        ),
        "backends[1].storage_config.path"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[policy]\ntype = \"always_use\"\nbackend = \"nope\"\n"
        )),
        "policy.backend"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[policy]\ntype = \"first_available\"\nbackends = [\"m\", \"z\"]\n"
        )),
        "policy.backends[1]"
    );
    assert_eq!(
        field_of(&format!("{MEM}[policy]\ntype = \"fastest\"\n")),
        "policy.type"
    );
    assert_eq!(
        field_of(&format!("{MEM}[auth]\ntoken = \"hunter2\"\n")),
        "auth.token"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[auth]\ntoken_env = \"S8_SURELY_UNSET_VAR\"\n"
        )),
        "auth.token_env"
    );
    assert_eq!(
        field_of(&format!(
            "{MEM}[auth]\ntoken_file = \"/nonexistent-s8/token\"\n"
        )),
        "auth.token_file"
    );
    let e =
        parse("[[backends]]\nname = \"x\"\nstorage_config = { type = \"local\", path = \"\" }\n")
            .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("backends[0].storage_config.path: "),
        "{e}"
    );
    assert!(matches!(parse("listen = "), Err(ConfigError::Syntax(_))));
}

#[test]
fn secrets_come_from_elsewhere() {
    let dir = std::env::temp_dir().join(format!("s8-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "0123456789abcdef-token\n").unwrap();
    std::fs::write(dir.join("anon"), "anon-from-file\n").unwrap();
    let c = HostConfig::from_toml_str(
        "[auth]\ntoken_file = \"token\"\n[[backends]]\nname = \"s\"\n[backends.storage_config]\ntype = \"supabase\"\nurl = \"http://127.0.0.1:3000\"\nanon_key = { file = \"anon\" }\n",
        &dir,
    )
    .unwrap();
    assert_eq!(
        c.auth.token.as_ref().unwrap().expose(),
        "0123456789abcdef-token"
    );
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "Debug hides the token"
    );
    match &c.backends[0].storage_config {
        StorageConfig::Supabase {
            anon_key, schema, ..
        } => {
            assert_eq!(anon_key, "anon-from-file");
            assert_eq!(schema, "public");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !c.warnings.iter().any(|w| w.contains("inline")),
        "{:?}",
        c.warnings
    );

    let c = parse("[[backends]]\nname = \"r\"\n[backends.storage_config]\ntype = \"custom\"\nplugin_name = \"redis\"\nconfig = { password = \"pw\" }\n").unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("backends[0].storage_config.config.password")),
        "{:?}",
        c.warnings
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_secret_warning_fires_for_secrets_only() {
    for name in [
        "password",
        "redis_password",
        "api_key",
        "apiKey",
        "anon_key",
        "service_role_key",
        "privateKey",
        "access_token",
        "client_secret",
        "credentials",
        "auth",
        "key",
        "db_pass",
    ] {
        assert!(looks_like_secret_name(name), "{name}");
    }
    for name in [
        "key_prefix",
        "keyPrefix",
        "keyspace",
        "max_keys",
        "auth_mode",
        "monkey",
        "url",
        "ttl_seconds",
        "timeout_ms",
        "author",
    ] {
        assert!(!looks_like_secret_name(name), "{name}");
    }
    let warnings = |config: &str| {
        parse(&format!(
            "[[backends]]\nname = \"r\"\n[backends.storage_config]\ntype = \"custom\"\nplugin_name = \"redis\"\nconfig = {{ {config} }}\n"
        ))
        .unwrap()
        .warnings
    };
    assert!(
        warnings("url = \"redis://127.0.0.1:6379\", key_prefix = \"app:cache:\"").is_empty(),
        "key_prefix is not a secret"
    );
    let w = warnings("url = \"redis://:hunter2@127.0.0.1:6379\"");
    assert!(
        w.len() == 1 && w[0].starts_with("backends[0].storage_config.config.url:"),
        "a password in a URL is a secret: {w:?}"
    );
    assert!(!w[0].contains("hunter2"), "{w:?}");
    assert_eq!(warnings("api_key = \"abc\"").len(), 1);
}

#[test]
fn connection_limits_and_timeouts() {
    let c = parse(MEM).unwrap();
    assert_eq!(
        (
            c.header_timeout,
            c.idle_timeout,
            c.body_timeout,
            c.max_connections
        ),
        (
            DEFAULT_HEADER_TIMEOUT,
            DEFAULT_IDLE_TIMEOUT,
            DEFAULT_BODY_TIMEOUT,
            DEFAULT_MAX_CONNECTIONS
        )
    );
    assert_eq!(c.send_timeout, DEFAULT_SEND_TIMEOUT);
    let c = parse(&format!(
        "header_timeout = \"2s\"\nidle_timeout = \"1m\"\nbody_timeout = \"500ms\"\nsend_timeout = \"3s\"\nmax_connections = 10\n{MEM}"
    ))
    .unwrap();
    assert_eq!(c.send_timeout, Duration::from_secs(3));
    assert_eq!(
        (
            c.header_timeout,
            c.idle_timeout,
            c.body_timeout,
            c.max_connections
        ),
        (
            Duration::from_secs(2),
            Duration::from_secs(60),
            Duration::from_millis(500),
            10
        )
    );
    for (field, value) in [
        ("header_timeout", "\"0s\""),
        ("idle_timeout", "\"2h\""),
        ("body_timeout", "\"soon\""),
        ("send_timeout", "-1"),
        ("max_connections", "0"),
        ("max_connections", "\"many\""),
    ] {
        assert_eq!(field_of(&format!("{field} = {value}\n{MEM}")), field);
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storage-host.toml");
    let c = HostConfig::from_file(&path).unwrap();
    assert_eq!(c.backends.len(), 2);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size(&Value::String("4MiB".into())), Ok(4 << 20));
    assert_eq!(parse_size(&Value::String("512 KiB".into())), Ok(512 << 10));
    assert_eq!(parse_size(&Value::String("1MB".into())), Ok(1_000_000));
    assert_eq!(parse_size(&Value::Integer(10)), Ok(10));
    assert!(parse_size(&Value::String("MiB".into())).is_err());
    assert_eq!(
        parse_duration(&Value::String("2m".into())),
        Ok(Duration::from_secs(120))
    );
    assert_eq!(
        parse_duration(&Value::String("30s".into())),
        Ok(Duration::from_secs(30))
    );
    assert!(parse_duration(&Value::String("2h".into())).is_err());
    // A duration carries its unit: a bare number is refused with the fix.
    for bare in [Value::Integer(30), Value::String("30".into())] {
        let e = parse_duration(&bare).unwrap_err();
        assert!(e.contains("has no unit") && e.contains("\"30s\""), "{e}");
    }
    let e = field_of("op_timeout = 30");
    assert!(e.starts_with("op_timeout"), "{e}");
}

#[test]
fn urls_with_credentials_are_secrets_in_every_form() {
    use super::sources::url_with_password;
    for secret in [
        "redis://:pw@127.0.0.1:6379",
        "postgres://user:pw@db/app",
        "http:///u:p@h",
        "https:u:pw@h",
        "redis://127.0.0.1/?password=pw",
    ] {
        assert!(url_with_password(secret), "{secret}");
    }
    for plain in [
        "redis://127.0.0.1:6379/0",
        "https://project.supabase.co",
        "app:cache:",
        "user@example.com",
        "",
    ] {
        assert!(!url_with_password(plain), "{plain}");
    }
}
