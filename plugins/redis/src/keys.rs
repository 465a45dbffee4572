//! Key namespacing: the prefix that isolates one backend's keys from every
//! other user of the same Redis database, and the glob escaping `SCAN MATCH`
//! needs so that a listed prefix is taken literally.

/// Maps the host's keys to Redis keys and back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// A namespace whose Redis keys all start with `prefix` (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Namespace {
            prefix: prefix.into(),
        }
    }

    /// The namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// The `SCAN MATCH` pattern selecting the Redis keys of every key that
    /// starts with `prefix`. Both the namespace and `prefix` are escaped: a key
    /// prefix like `a*` must list `a*1`, not `ab`.
    pub fn match_pattern(&self, prefix: &str) -> String {
        let mut p = String::with_capacity(2 * (self.prefix.len() + prefix.len()) + 1);
        escape_glob_into(&self.prefix, &mut p);
        escape_glob_into(prefix, &mut p);
        p.push('*');
        p
    }

    /// The host key of Redis key `redis_key`, when it belongs to this
    /// namespace, starts with `prefix` and is valid UTF-8.
    ///
    /// The pattern already filters; checking again here means a quirk of the
    /// server's glob matcher can never leak a foreign key into a listing.
    pub fn host_key<'a>(&self, redis_key: &'a [u8], prefix: &str) -> Option<&'a str> {
        let rest = redis_key.strip_prefix(self.prefix.as_bytes())?;
        if !rest.starts_with(prefix.as_bytes()) {
            return None;
        }
        std::str::from_utf8(rest).ok()
    }
}

/// Escapes the characters Redis glob patterns treat specially (`*`, `?`, `[`,
/// `]`, `\`) with a backslash, so that the result matches `s` literally.
///
/// `^` and `-` are special only inside brackets, which escaping `[` rules out.
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_glob_into(s, &mut out);
    out
}

fn escape_glob_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_glob_character() {
        assert_eq!(escape_glob("plain:key/ü"), "plain:key/ü");
        assert_eq!(escape_glob(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert_eq!(escape_glob("^-"), "^-");
    }

    #[test]
    fn pattern_escapes_namespace_and_prefix() {
        let ns = Namespace::new("app[1]:");
        assert_eq!(ns.match_pattern("x*"), r"app\[1\]:x\**");
        assert_eq!(ns.match_pattern(""), r"app\[1\]:*");
        assert_eq!(Namespace::default().match_pattern(""), "*");
    }

    #[test]
    fn host_key_strips_and_filters() {
        let ns = Namespace::new("ns:");
        assert_eq!(ns.redis_key("k"), "ns:k");
        assert_eq!(ns.host_key(b"ns:abc", "a"), Some("abc"));
        assert_eq!(ns.host_key(b"ns:abc", ""), Some("abc"));
        assert_eq!(ns.host_key(b"ns:abc", "b"), None);
        assert_eq!(ns.host_key(b"other:abc", ""), None);
        assert_eq!(ns.host_key(b"ns:\xff", ""), None);
    }
}

#[cfg(test)]
mod properties {
    //! Property tests: a listing pattern selects exactly the keys of its
    //! namespace that start with its prefix, whatever glob characters either holds.

    use super::*;
    use proptest::prelude::*;

    /// Redis's glob matching (`stringmatchlen`) for `*`, `?`, `[...]`, `\`.
    fn glob(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                !s.is_empty() && s[0] == rest[0] && glob(&rest[1..], &s[1..])
            }
            Some(('[', rest)) => {
                let Some(end) = rest.iter().position(|c| *c == ']') else {
                    return !s.is_empty() && s[0] == '[' && glob(rest, &s[1..]);
                };
                !s.is_empty() && rest[..end].contains(&s[0]) && glob(&rest[end + 1..], &s[1..])
            }
            Some((c, rest)) => !s.is_empty() && s[0] == *c && glob(rest, &s[1..]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn pattern_selects_exactly_the_prefixed_keys(
            ns in "[a-c*?\\[\\]\\\\:]{0,4}",
            prefix in "[a-c*?\\[\\]\\\\]{0,3}",
            key in "[a-c*?\\[\\]\\\\]{0,5}",
        ) {
            let n = Namespace::new(ns.clone());
            let pattern: Vec<char> = n.match_pattern(&prefix).chars().collect();
            let redis_key: Vec<char> = n.redis_key(&key).chars().collect();
            prop_assert_eq!(glob(&pattern, &redis_key), key.starts_with(&prefix), "ns {:?} prefix {:?} key {:?}", ns, prefix, key);
            prop_assert_eq!(n.host_key(n.redis_key(&key).as_bytes(), &prefix).is_some(), key.starts_with(&prefix));
        }
    }
}
