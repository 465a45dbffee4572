//! Unit tests of the checks' own helpers.

use crate::plugin_config::*;
use crate::redis_key::*;
use crate::supabase_key::*;

#[test]
fn redis_glob_follows_redis() {
    for (p, s, want) in [
        ("*", "", false),
        ("a*", "a", true),
        ("a**", "a", true),
        ("a*", "abc", true),
        ("a*c", "abc", true),
        ("a*d", "abc", false),
        ("h?llo", "hello", true),
        ("h?llo", "hllo", false),
        ("h[ae]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("h[b-a]llo", "hallo", true),
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("[\\]]", "]", true),
        ("[", "[", false),
        ("x\\", "x\\", true),
    ] {
        assert_eq!(
            redis_glob(p.as_bytes(), s.as_bytes()),
            want,
            "{p:?} on {s:?}"
        );
    }
}

#[test]
fn like_patterns() {
    let like = |p: &str, s: &str| like_matches(&like_tokens(p).unwrap(), s);
    assert!(like("a%", "abc"));
    assert!(like("a\\%%", "a%c"));
    assert!(!like("a\\%%", "abc"));
    assert!(like("a_c", "abc"));
    assert!(like("%b%", "abc"));
    assert!(!like("a", "ab"));
    assert!(like_tokens("a\\").is_err());
}

#[test]
fn rotate_keeps_the_shape() {
    assert_eq!(rotate("az AZ 09 %4f-"), "ba BA 10 %4f-");
}
