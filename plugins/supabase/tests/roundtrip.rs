//! Data goes in and comes out unchanged, through a real PostgREST behind a
//! gateway, driven through `StorageManager`.
//!
//! Needs `scripts/supabase-local.sh` to have run.

mod common;

use common::{ALT_SCHEMA, Direct, manager, service_config, unique_prefix, with};
use futures_util::{StreamExt as _, stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_exactly() {
    let m = manager(service_config()).await;
    let p = unique_prefix("values_round_trip_exactly");
    let all_bytes: Vec<u8> = (0..=255).collect();
    // 8 MiB that is not all zeros: a pattern covering every byte value.
    let big: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("one", b"\x00"),
        ("all-256", &all_bytes),
        ("text", b"hello \\x00 \"world\""),
        ("8mib", &big),
    ];
    for (name, value) in cases {
        let key = format!("{p}{name}");
        m.put(&key, value.to_vec()).await.unwrap();
        let got = m.get(&key).await.unwrap();
        assert_eq!(got.as_deref().map(<[u8]>::len), Some(value.len()), "{name}");
        assert!(
            got.as_deref() == Some(value),
            "{name}: value changed in transit"
        );
    }
    Direct::new().purge("public", &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces_and_sets_updated_at() {
    let m = manager(service_config()).await;
    let p = unique_prefix("overwrite");
    let key = format!("{p}k");
    let direct = Direct::new();
    let updated_at = || async {
        let rows = direct
            .get("public", &format!("storage?select=updated_at&key=eq.{key}"))
            .await;
        rows[0]["updated_at"].as_str().unwrap().to_string()
    };

    m.put(&key, b"first".to_vec()).await.unwrap();
    let t1 = updated_at().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    m.put(&key, b"second, longer".to_vec()).await.unwrap();
    let t2 = updated_at().await;
    assert_eq!(
        m.get(&key).await.unwrap().as_deref(),
        Some(&b"second, longer"[..])
    );
    m.put(&key, Vec::new()).await.unwrap();
    assert_eq!(m.get(&key).await.unwrap().as_deref(), Some(&b""[..]));
    // Same format from PostgreSQL, so the strings order like the times.
    assert!(t2 > t1, "updated_at did not advance: {t1} -> {t2}");
    direct.purge("public", &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_and_idempotent_delete() {
    let m = manager(service_config()).await;
    let p = unique_prefix("missing");
    assert_eq!(m.get(&format!("{p}never-written")).await.unwrap(), None);
    m.delete(&format!("{p}never-written")).await.unwrap();

    let key = format!("{p}k");
    m.put(&key, b"v".to_vec()).await.unwrap();
    m.delete(&key).await.unwrap();
    assert_eq!(m.get(&key).await.unwrap(), None);
    m.delete(&key).await.unwrap();
    assert_eq!(m.list(&p).await.unwrap(), Vec::<String>::new());
}

/// Keys built to break a query string or a filter, if anything were not
/// encoded: every one round-trips, and writing or deleting one never touches
/// another row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_keys_round_trip_and_stay_apart() {
    let m = manager(service_config()).await;
    let p = unique_prefix("adversarial");
    let long_ascii = "k".repeat(1500);
    let long_unicode = "ключ🔑".repeat(100); // 1400 bytes
    let suffixes: Vec<&str> = vec![
        "",
        "&",
        "=",
        ",",
        "(",
        ")",
        "*",
        "%",
        "\"",
        "\\",
        "/",
        "..",
        "../..",
        " ",
        "  two  spaces ",
        "+",
        "%2B",
        "%20",
        "%%",
        "a&key=eq.b",
        "x=eq.y",
        "eq.z",
        "not.eq.1",
        "or=(a.eq.1,b.eq.2)",
        "in.(a,b)",
        "like.*",
        "*x*",
        "_",
        "a_c",
        "abc",
        "\\x00",
        "'; drop table storage; --",
        "\"quoted\"",
        "(parens)",
        "{braces}",
        "[brackets]",
        "#fragment",
        "?query",
        "line\nbreak",
        "tab\t",
        "\u{7f}",
        "é",
        "日本語",
        "🙂",
        "\u{200b}",
        "\u{feff}bom",
        &long_ascii,
        &long_unicode,
    ];
    let keys: Vec<String> = suffixes.iter().map(|s| format!("{p}{s}")).collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "the corpus has no duplicates");
    // A few keys outside the prefix too (the empty key, bare specials):
    // only this test uses them.
    let bare = ["", "*", "%", "&"];

    for (i, key) in keys.iter().enumerate() {
        m.put(key, format!("value {i}").into_bytes()).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let got = m.get(key).await.unwrap();
        assert_eq!(got, Some(format!("value {i}").into_bytes()), "key {key:?}");
    }
    let sorted = distinct;
    assert_eq!(
        m.list(&p).await.unwrap(),
        sorted,
        "list returns exactly the keys, in byte order"
    );

    // Prefixes with like's special characters match literally.
    for special in ["%", "*", "_", "\\", "a_", "%2"] {
        let want: Vec<String> = sorted
            .iter()
            .filter(|k| k.starts_with(&format!("{p}{special}")))
            .cloned()
            .collect();
        assert_eq!(
            m.list(&format!("{p}{special}")).await.unwrap(),
            want,
            "prefix {special:?}"
        );
    }

    for key in bare {
        m.put(key, key.as_bytes().to_vec()).await.unwrap();
        assert_eq!(
            m.get(key).await.unwrap(),
            Some(key.as_bytes().to_vec()),
            "{key:?}"
        );
    }

    // Delete one key at a time: exactly that one goes each time.
    let mut remaining = sorted.clone();
    for key in &sorted {
        m.delete(key).await.unwrap();
        remaining.retain(|k| k != key);
        assert_eq!(
            m.list(&p).await.unwrap(),
            remaining,
            "after deleting {key:?}"
        );
    }
    for key in bare {
        assert_eq!(
            m.get(key).await.unwrap(),
            Some(key.as_bytes().to_vec()),
            "{key:?}"
        );
        m.delete(key).await.unwrap();
        assert_eq!(m.get(key).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_past_the_row_cap() {
    let m = manager(service_config()).await;
    let p = unique_prefix("list-pages");
    let n = 2600;
    let keys: Vec<String> = (0..n).map(|i| format!("{p}k{i:05}")).collect();
    // Neighbours that must not be listed: the prefix without its last
    // character, and keys just before and after the prefix's range.
    let outside = [
        p.trim_end_matches('/').to_string(),
        format!("{}.", p.trim_end_matches('/')),
        format!("{}0", p.trim_end_matches('/')),
    ];
    let puts = stream::iter(keys.iter().chain(outside.iter()))
        .map(|k| {
            let m = m.clone();
            async move { m.put(k, b"x".to_vec()).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(
        puts.iter().all(Result::is_ok),
        "{:?}",
        puts.iter().find(|r| r.is_err())
    );

    let listed = m.list(&p).await.unwrap();
    assert_eq!(listed.len(), n, "more than 2 pages of 1000 rows");
    assert_eq!(listed, keys, "every key once, in order");
    assert_eq!(
        m.list(&format!("{p}k025")).await.unwrap(),
        keys[2500..2600].to_vec()
    );

    let direct = Direct::new();
    direct.purge("public", &p).await;
    for k in &outside {
        m.delete(k).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_public_schema() {
    let config = with(service_config(), |schema, _, _, _| {
        *schema = ALT_SCHEMA.into()
    });
    let m = manager(config).await;
    let p = unique_prefix("schema");
    let key = format!("{p}k");
    m.put(&key, b"in the other schema".to_vec()).await.unwrap();
    assert_eq!(
        m.get(&key).await.unwrap().as_deref(),
        Some(&b"in the other schema"[..])
    );
    assert_eq!(m.list(&p).await.unwrap(), vec![key.clone()]);

    let direct = Direct::new();
    let there = direct
        .get(ALT_SCHEMA, &format!("storage?select=key&key=eq.{key}"))
        .await;
    let not_here = direct
        .get("public", &format!("storage?select=key&key=eq.{key}"))
        .await;
    assert_eq!(
        there.as_array().unwrap().len(),
        1,
        "the row is in {ALT_SCHEMA}.storage"
    );
    assert_eq!(
        not_here.as_array().unwrap().len(),
        0,
        "and not in public.storage"
    );

    m.delete(&key).await.unwrap();
    assert_eq!(m.get(&key).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_share_one_client() {
    let m = manager(service_config()).await;
    let p = unique_prefix("concurrent");
    let results = stream::iter(0..200)
        .map(|i| {
            let m = m.clone();
            let key = format!("{p}{i}");
            async move {
                m.put(&key, vec![i as u8; 100]).await?;
                m.get(&key).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        assert_eq!(r.unwrap().map(|v| v.len()), Some(100));
    }
    assert_eq!(m.list(&p).await.unwrap().len(), 200);
    Direct::new().purge("public", &p).await;
}
