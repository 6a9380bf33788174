//! Shell-style glob matching (`*` any run of characters, `?` one character) for fault rules.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer matcher with backtracking to the last star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(matches("*", "anything"));
        assert!(matches("ghcr.io/app:*-bad", "ghcr.io/app:1.2-bad"));
        assert!(matches("*-backup-?", "meet-backup-1"));
        assert!(!matches("*-backup-?", "meet-backup-12"));
        assert!(!matches("app:1", "app:12"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
    }
}
