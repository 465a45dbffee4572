//! `redis_key`: keys and patterns through the Redis plugin, checked against
//! Redis's own glob matching.

use crate::{split, text};

/// Redis's glob matching, `stringmatchlen` of util.c (case-sensitive), on bytes.
pub fn redis_glob(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_impl(pattern, string, &mut skip_longer, 0)
}

fn glob_impl(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    // Each arm consumes what it matched of the pattern and the string.
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if glob_impl(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                p = &p[1..];
                s = &s[1..];
            }
            b'[' => {
                let mut q = &p[1..];
                let not = q.first() == Some(&b'^');
                if not {
                    q = &q[1..];
                }
                let mut matched = false;
                loop {
                    if q.len() >= 2 && q[0] == b'\\' {
                        matched |= q[1] == s[0];
                        q = &q[2..];
                    } else if q.first() == Some(&b']') {
                        q = &q[1..];
                        break;
                    } else if q.is_empty() {
                        // An unterminated class ends with the pattern.
                        break;
                    } else if q.len() >= 3 && q[1] == b'-' {
                        let (start, end) = (q[0].min(q[2]), q[0].max(q[2]));
                        matched |= (start..=end).contains(&s[0]);
                        q = &q[3..];
                    } else {
                        matched |= q[0] == s[0];
                        q = &q[1..];
                    }
                }
                if matched == not {
                    return false;
                }
                p = q;
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                if p[1] != s[0] {
                    return false;
                }
                p = &p[2..];
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                p = &p[1..];
                s = &s[1..];
            }
        }
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

/// Whether `SCAN ... MATCH pattern` returns `key`: SCAN skips matching
/// when the pattern is exactly `*` (`scanGenericCommand`), so that one also
/// returns the empty key, which `stringmatchlen` alone would not match.
pub fn scan_matches(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || redis_glob(pattern, key)
}

/// The arguments of a RESP array of bulk strings (what a client sends).
fn resp_args(mut b: &[u8]) -> Vec<Vec<u8>> {
    fn line(b: &mut &[u8], lead: u8) -> usize {
        assert_eq!(b.first(), Some(&lead), "RESP: expected {:?}", lead as char);
        let end = b.windows(2).position(|w| w == b"\r\n").expect("RESP: CRLF");
        let n = std::str::from_utf8(&b[1..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("RESP: a length");
        *b = &b[end + 2..];
        n
    }
    let count = line(&mut b, b'*');
    let mut args = Vec::new();
    for _ in 0..count {
        let len = line(&mut b, b'$');
        args.push(b[..len].to_vec());
        assert_eq!(&b[len..len + 2], b"\r\n", "RESP: CRLF after a bulk string");
        b = &b[len + 2..];
    }
    assert!(b.is_empty(), "RESP: bytes after the command");
    args
}

/// The Redis plugin's keys: under Redis's own glob rules, the `SCAN MATCH`
/// pattern of a listing selects exactly the Redis keys of the namespace that
/// start with the prefix, whatever glob characters either holds; a Redis key
/// maps back to a host key only when it is one of those, and then to exactly
/// the key that was stored; commands carry the key byte for byte.
///
/// Input: namespace, 0xFF, prefix, 0xFF, key (the key's raw bytes also serve
/// as an arbitrary Redis key, possibly foreign, possibly not UTF-8).
pub fn check_redis_key(data: &[u8]) {
    let (ns, rest) = split(data);
    let (prefix, raw) = split(rest);
    let (ns, prefix, key) = (text(ns), text(prefix), text(raw));
    let n = storage_redis::Namespace::new(ns.as_ref());
    assert_eq!(n.prefix(), ns);
    let pattern = n.match_pattern(&prefix);
    let redis_key = n.redis_key(&key);
    assert_eq!(redis_key, format!("{ns}{key}"));

    // The host key stored, and any Redis key at all.
    let under = key.starts_with(prefix.as_ref());
    assert_eq!(
        scan_matches(pattern.as_bytes(), redis_key.as_bytes()),
        under,
        "pattern {pattern:?} on {redis_key:?} (namespace {ns:?}, prefix {prefix:?})"
    );
    let full_prefix = format!("{ns}{prefix}");
    assert_eq!(
        scan_matches(pattern.as_bytes(), raw),
        raw.starts_with(full_prefix.as_bytes()),
        "pattern {pattern:?} on the Redis key {:?}",
        String::from_utf8_lossy(raw)
    );

    assert_eq!(
        n.host_key(redis_key.as_bytes(), &prefix),
        under.then_some(key.as_ref())
    );
    match n.host_key(raw, &prefix) {
        Some(k) => {
            assert_eq!(n.redis_key(k).as_bytes(), raw);
            assert!(k.starts_with(prefix.as_ref()));
        }
        None => assert!(
            !raw.starts_with(full_prefix.as_bytes()) || std::str::from_utf8(raw).is_err(),
            "{:?} is under the namespace and prefix but was not listed",
            String::from_utf8_lossy(raw)
        ),
    }

    // The commands the backend sends carry the key and the pattern unchanged.
    let mut get = redis::cmd("GET");
    get.arg(&redis_key);
    assert_eq!(
        resp_args(&get.get_packed_command()),
        [b"GET".to_vec(), redis_key.as_bytes().to_vec()]
    );
    let mut set = redis::cmd("SET");
    set.arg(&redis_key).arg(raw);
    assert_eq!(
        resp_args(&set.get_packed_command()),
        [b"SET".to_vec(), redis_key.as_bytes().to_vec(), raw.to_vec()]
    );
    let mut scan = redis::cmd("SCAN");
    scan.arg(0u64).arg("MATCH").arg(&pattern);
    assert_eq!(
        resp_args(&scan.get_packed_command())[3],
        pattern.as_bytes().to_vec()
    );
}
