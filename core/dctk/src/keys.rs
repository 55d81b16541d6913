//! Unknown-key errors of script settings (`train(#{...})`, `generate(#{...})`, generator
//! maps): the message names the key and, when one known key is a likely typo of it,
//! suggests that key.

/// The closest of `known` to `key` by edit distance (Levenshtein), if it is close enough to
/// be a typo.
pub fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known.iter().map(|k| (strsim::levenshtein(key, k), *k)).filter(|(d, k)| *d <= 2.max(k.len() / 4)).min().map(|(_, k)| k)
}

/// `unknown key "{prefix}{key}" (did you mean "{prefix}{suggestion}"?)`, or the known keys
/// when nothing is close.
pub fn unknown_key(prefix: &str, key: &str, known: &[&str]) -> String {
    match suggest(key, known) {
        Some(s) => format!("unknown key \"{prefix}{key}\" (did you mean \"{prefix}{s}\"?)"),
        None => format!("unknown key \"{prefix}{key}\"; known keys: {}", known.join(", ")),
    }
}
