//! "Did you mean ...?": the closest of known names to a misspelt one.

/// Levenshtein distance between two strings, in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate closest to `given`, if it is within two edits (the first of equally close ones).
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(given, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("operater", "operator"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("NP999", "NP009"), 2);
        assert_eq!(closest("valus", ["key", "operator", "values"]), Some("values"));
        assert_eq!(closest("zzzzzz", ["key", "operator", "values"]), None);
    }
}
