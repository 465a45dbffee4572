//! Any configuration JSON given to any shipped plugin gives an answer, never a
//! panic or a hang: accepted, or refused as invalid configuration with a message.

use p2p_ai_agents::storage::plugin_api::ffi::PluginModRef;
use p2p_ai_agents::storage::plugin_api::{ErrorKind, module_of};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn plugins() -> Vec<PluginModRef> {
    vec![
        module_of::<storage_local::LocalPlugin>(),
        module_of::<storage_supabase::SupabasePlugin>(),
        module_of::<storage_redis::RedisPlugin>(),
    ]
}

/// Field names the plugins read, and some they do not, so generated objects
/// often look almost right.
const FIELDS: &[&str] = &[
    "path",
    "url",
    "anon_key",
    "service_role_key",
    "schema",
    "table_name",
    "timeout",
    "max_retries",
    "key_prefix",
    "ttl_seconds",
    "timeout_ms",
    "tls_ca_file",
    "other",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("redis://127.0.0.1:1/0"),
            Just("http://127.0.0.1:1"),
            Just("https://x.supabase.co"),
            Just("public"),
            Just(""),
            Just("/"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..8).prop_map(
                |kv| Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn validate_config_answers_clearly(config in json()) {
        let text = config.to_string();
        for module in plugins() {
            match (module.validate_config())(text.as_str().into()).into_result() {
                Ok(()) => {}
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{}: {}", module.name(), e);
                    prop_assert!(!e.message().is_empty());
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_is_refused_not_a_crash(text in "\\PC{0,80}") {
        for module in plugins() {
            if let Err(e) = (module.validate_config())(text.as_str().into()).into_result() {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{}: {}", module.name(), e);
            }
        }
    }
}
