//! Members' names: the controller gives each member a name that is unique in its network and safe as
//! a DNS label, and keeps the name the member asked for as a label for people, made safe to print.
//!
//! Pure. A member chooses what it asks for, so nothing it sends can make two members share a name
//! (which would make `meshd member remove NAME` ambiguous), nor put a control, bidirectional or
//! zero-width character on the operator's terminal.

/// The longest DNS label (RFC 1035).
pub const MAX_NAME: usize = 63;
/// The longest label kept, in characters.
pub const MAX_LABEL: usize = 64;
/// The name of a member that asked for nothing usable.
pub const FALLBACK: &str = "node";

/// The DNS-safe form of `requested`: lowercase ASCII letters and digits, every other run of characters
/// one hyphen, no hyphen at either end, at most [`MAX_NAME`] bytes; [`FALLBACK`] if nothing is left.
pub fn dns_name(requested: &str) -> String {
    let mut out = String::with_capacity(requested.len().min(MAX_NAME));
    for c in requested.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if out.len() == MAX_NAME {
                break;
            }
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            if out.len() == MAX_NAME {
                break;
            }
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        FALLBACK.to_string()
    } else {
        out.to_string()
    }
}

/// `base` if nobody has it (`taken`), else `base-2`, `base-3`, ... shortened so that it stays within
/// [`MAX_NAME`]. `base` must be a [`dns_name`].
pub fn unique(base: &str, mut taken: impl FnMut(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    let mut n: u64 = 2;
    loop {
        let suffix = format!("-{n}");
        let stem = base[..base.len().min(MAX_NAME - suffix.len())].trim_end_matches('-');
        let candidate = format!("{stem}{suffix}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// `requested` as it may be printed: without control, bidirectional-override and zero-width (or other
/// invisible formatting) characters, spaces trimmed, at most [`MAX_LABEL`] characters.
pub fn printable_label(requested: &str) -> String {
    let kept: String = requested
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible_format(c))
        .take(MAX_LABEL)
        .collect();
    kept.trim().to_string()
}

/// Unicode format characters (category Cf) and the other invisible ones that can reorder or hide
/// text in a terminal: bidi embeddings, overrides, isolates and marks, zero-width spaces and joiners,
/// the word joiner and invisible operators, the byte-order mark, soft hyphen, and tag characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{061C}'
        | '\u{115F}' | '\u{1160}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_name("laptop"), "laptop");
        assert_eq!(dns_name("Laptop"), "laptop");
        assert_eq!(dns_name("Küche laptop"), "k-che-laptop");
        assert_eq!(dns_name("  --a__b--  "), "a-b");
        assert_eq!(dns_name("evil\u{202E}txt.exe"), "evil-txt-exe");
        assert_eq!(dns_name("zero\u{200B}width"), "zero-width");
        assert_eq!(dns_name(""), FALLBACK);
        assert_eq!(dns_name("\u{200B}\u{202E}"), FALLBACK);
        assert_eq!(dns_name("日本"), FALLBACK);
        let long = dns_name(&"ab-".repeat(100));
        assert!(long.len() <= MAX_NAME && !long.ends_with('-'), "{long}");
        for requested in ["x", "A B C", &"q".repeat(200), "-", "a\nb"] {
            let name = dns_name(requested);
            assert!(name.len() <= MAX_NAME && !name.is_empty());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'));
        }
    }

    #[test]
    fn duplicates_get_a_number() {
        let mut have: Vec<String> = Vec::new();
        for _ in 0..12 {
            let name = unique("laptop", |n| have.iter().any(|h| h == n));
            have.push(name);
        }
        assert_eq!(have[0], "laptop");
        assert_eq!(have[1], "laptop-2");
        assert_eq!(have[11], "laptop-12");
        let base = "x".repeat(MAX_NAME);
        let second = unique(&base, |n| n == base);
        assert_eq!(second.len(), MAX_NAME);
        assert!(second.ends_with("-2"));
    }

    #[test]
    fn labels_lose_what_would_fool_a_terminal() {
        assert_eq!(printable_label("Küche laptop"), "Küche laptop");
        assert_eq!(printable_label("evil\u{202E}txt.exe"), "eviltxt.exe");
        assert_eq!(printable_label("a\u{200B}b\u{2066}c\u{FEFF}"), "abc");
        assert_eq!(printable_label("tab\there\n"), "tabhere");
        assert_eq!(printable_label(" x ").len(), 1);
        assert_eq!(printable_label(&"é".repeat(100)).chars().count(), MAX_LABEL);
    }
}
