//! One page of a key listing: the bounded alternative to listing every key.

/// Up to `limit` keys of a listing, and whether more follow.
///
/// Keys are in ascending byte order. To get the next page, list again with
/// `after` set to the last key of this one: the cursor is a key, not an
/// offset, so a page boundary stays correct while keys are added or removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys of this page, ascending.
    pub keys: Vec<String>,
    /// Whether keys after the last one of this page match too.
    pub more: bool,
}

impl KeyPage {
    /// Cuts the page that starts after `after` (or at the beginning) out of
    /// `keys`, which must be sorted ascending and unique. This is how a
    /// backend without a native paged listing answers one.
    pub fn cut(mut keys: Vec<String>, after: Option<&str>, limit: usize) -> KeyPage {
        let start = match after {
            Some(after) => keys.partition_point(|k| k.as_str() <= after),
            None => 0,
        };
        keys.drain(..start);
        let more = keys.len() > limit;
        keys.truncate(limit);
        KeyPage { keys, more }
    }

    /// The page built from up to `limit + 1` ascending keys read after the
    /// cursor: the extra key only tells that more follow. This is how a
    /// backend with an ordered index answers (read one key past the page).
    pub fn from_overfetch(mut keys: Vec<String>, limit: usize) -> KeyPage {
        let more = keys.len() > limit;
        keys.truncate(limit);
        KeyPage { keys, more }
    }

    /// The cursor for the next page: the last key, when more follow.
    pub fn next_after(&self) -> Option<&str> {
        if self.more {
            self.keys.last().map(String::as_str)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyPage;

    fn keys(ks: &[&str]) -> Vec<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn cut_pages_through_every_key_once() {
        let all = keys(&["a", "b", "c", "d", "e"]);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = KeyPage::cut(all.clone(), after.as_deref(), 2);
            assert!(page.keys.len() <= 2);
            seen.extend(page.keys.iter().cloned());
            match page.next_after() {
                Some(k) => after = Some(k.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_cursor_that_is_not_a_key_still_splits_correctly() {
        let page = KeyPage::cut(keys(&["a", "c", "e"]), Some("b"), 10);
        assert_eq!(page.keys, keys(&["c", "e"]));
        assert!(!page.more);
        assert_eq!(page.next_after(), None);
    }

    #[test]
    fn an_exact_fit_has_no_more() {
        let page = KeyPage::cut(keys(&["a", "b"]), None, 2);
        assert_eq!(page.keys, keys(&["a", "b"]));
        assert!(!page.more);
        let over = KeyPage::from_overfetch(keys(&["a", "b", "c"]), 2);
        assert_eq!(over.keys, keys(&["a", "b"]));
        assert!(over.more);
        assert_eq!(over.next_after(), Some("b"));
    }
}
