//! GrowthBook's assignment arithmetic, bit for bit, so a user lands in the same variation here
//! as in any GrowthBook SDK: FNV-1a 32-bit over UTF-16 code units, the two hash versions,
//! bucket ranges from weights and coverage, the range lookup and namespaces. Written from the
//! SDK documentation and checked against the SDKs' published test cases (see the tests below).

/// One variation's slice of the unit interval, `[start, end)`.
pub type Range = (f64, f64);

/// FNV-1a, 32-bit, over the string's UTF-16 code units: JavaScript's `charCodeAt`, which is what
/// the reference SDK hashes, so a character outside the BMP counts as its two surrogates.
pub fn fnv1a32(s: &str) -> u32 {
    s.encode_utf16().fold(0x811c_9dc5_u32, |h, unit| {
        (h ^ u32::from(unit)).wrapping_mul(0x0100_0193)
    })
}

/// The bucket of `value` in `[0, 1)`: version 1 (the original, slightly biased one) hashes
/// `value + seed` into thousandths; version 2 hashes the decimal string of
/// `fnv(seed + value)` again into ten-thousandths. Any other version has no hash.
pub fn hash(seed: &str, value: &str, version: u32) -> Option<f64> {
    match version {
        1 => Some(f64::from(fnv1a32(&format!("{value}{seed}")) % 1000) / 1000.0),
        2 => {
            let first = fnv1a32(&format!("{seed}{value}"));
            Some(f64::from(fnv1a32(&first.to_string()) % 10_000) / 10_000.0)
        }
        _ => None,
    }
}

/// `n` equal weights (none for `n == 0`).
pub fn equal_weights(n: usize) -> Vec<f64> {
    // Lossless: variation counts are tiny.
    #[allow(clippy::cast_precision_loss)]
    let w = 1.0 / n as f64;
    vec![w; n]
}

/// The ranges of `n` variations: weights accumulate from 0, and each variation keeps the first
/// `coverage` share of its slice. As in the SDKs, coverage is clamped to `[0, 1]`, and weights
/// of the wrong length or not summing to 1 within 0.01 fall back to equal weights.
pub fn bucket_ranges(n: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<Range> {
    let coverage = coverage.clamp(0.0, 1.0);
    let equal = equal_weights(n);
    let mut weights = weights.unwrap_or(&equal);
    if weights.len() != n {
        weights = &equal;
    }
    // Summed left to right, as the SDK's `reduce` does, so rounding agrees at the 0.99/1.01 edges.
    let total = weights.iter().fold(0.0, |sum, w| sum + w);
    if !(0.99..=1.01).contains(&total) {
        weights = &equal;
    }
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|w| {
            let start = cumulative;
            cumulative += w;
            (start, start + coverage * w)
        })
        .collect()
}

/// `start <= n < end`.
pub fn in_range(n: f64, (start, end): Range) -> bool {
    n >= start && n < end
}

/// The first range holding `n`; `None` means not in the experiment (the SDKs' -1).
pub fn choose_variation(n: f64, ranges: &[Range]) -> Option<usize> {
    ranges.iter().position(|r| in_range(n, *r))
}

/// Whether `value` falls in `[start, end)` of namespace `id`, hashed with version 1 and the seed
/// `"__" + id` as the SDKs do, so mutually exclusive experiments stay exclusive across them.
pub fn in_namespace(value: &str, id: &str, start: f64, end: f64) -> bool {
    hash(&format!("__{id}"), value, 1).is_some_and(|n| in_range(n, (start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[Range], b: &[Range]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.0 - y.0).abs() < 1e-9 && (x.1 - y.1).abs() < 1e-9)
    }

    /// `hash` cases of GrowthBook's SDK test suite (`packages/sdk-js/test/cases.json`, spec
    /// 0.5.x, section "hash": seed, value, version, expected), plus the bucket values its
    /// "feature" and "stickyBucket" sections expect ("empty experiment rule": seed "feature",
    /// version 1; "creates experiments properly": seed "feature", version 2; sticky bucket
    /// cases: seed "feature-exp", version 2).
    #[test]
    fn hashes_like_the_sdk_test_suite() {
        let cases: &[(&str, &str, u32, Option<f64>)] = &[
            ("", "a", 1, Some(0.22)),
            ("", "b", 1, Some(0.077)),
            ("b", "a", 1, Some(0.946)),
            ("ef", "d", 1, Some(0.652)),
            ("asdf", "8952klfjas09ujk", 1, Some(0.549)),
            ("", "123", 1, Some(0.011)),
            ("", "___)((*\":&", 1, Some(0.563)),
            ("seed", "a", 2, Some(0.0505)),
            ("seed", "b", 2, Some(0.2696)),
            ("foo", "ab", 2, Some(0.2575)),
            ("foo", "def", 2, Some(0.2019)),
            ("89123klj", "8952klfjas09ujkasdf", 2, Some(0.124)),
            ("90850943850283058242805", "123", 2, Some(0.7516)),
            ("()**(%$##$%#$#", "___)((*\":&", 2, Some(0.0128)),
            ("abc", "def", 99, None),
            ("abc", "def", 0, None),
            ("feature", "123", 1, Some(0.863)),
            ("feature", "456", 1, Some(0.178)),
            ("feature", "fds", 1, Some(0.514)),
            ("feature", "123", 2, Some(0.5231)),
            ("feature-exp", "d123", 2, Some(0.6468)),
            ("feature-exp", "i123", 2, Some(0.9943)),
        ];
        for (seed, value, version, expected) in cases {
            assert_eq!(
                hash(seed, value, *version),
                *expected,
                "hash({seed:?}, {value:?}, {version})"
            );
        }
    }

    /// Strings beyond ASCII. Expected values come from `tests/fixtures/make_stats_fixture.py`,
    /// an independent Python implementation over `str.encode("utf-16-le")` code units, and are
    /// also checked from the committed fixture in `fixture_hashes_agree`.
    #[test]
    fn hashes_utf16_code_units_not_utf8_bytes() {
        // "é" is one UTF-16 unit (0x00e9) but two UTF-8 bytes; "😀" is a surrogate pair.
        assert_eq!(
            fnv1a32("é"),
            (0x811c_9dc5_u32 ^ 0xe9).wrapping_mul(0x0100_0193)
        );
        let pair = [0xd83d_u32, 0xde00];
        let expected = pair
            .iter()
            .fold(0x811c_9dc5_u32, |h, u| (h ^ u).wrapping_mul(0x0100_0193));
        assert_eq!(fnv1a32("😀"), expected);
        assert_ne!(
            fnv1a32("é"),
            "é".bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b))
                .wrapping_mul(0x0100_0193))
        );
        // The offset basis: nothing hashed.
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
    }

    #[derive(serde::Deserialize)]
    struct FixtureHash {
        seed: String,
        value: String,
        version: u32,
        fnv: u32,
        hash: f64,
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        hashes: Vec<FixtureHash>,
    }

    #[test]
    fn fixture_hashes_agree() {
        let fixture: Fixture =
            serde_json::from_str(include_str!("../../tests/fixtures/stats_fixture.json"))
                .expect("fixture parses");
        assert!(fixture.hashes.len() >= 8);
        for h in fixture.hashes {
            assert_eq!(fnv1a32(&h.value), h.fnv, "fnv({:?})", h.value);
            assert_eq!(
                hash(&h.seed, &h.value, h.version),
                Some(h.hash),
                "hash({:?}, {:?}, {})",
                h.seed,
                h.value,
                h.version
            );
        }
    }

    /// A `getBucketRange` case: name, variations, coverage, weights, expected ranges.
    type RangeCase<'a> = (&'a str, usize, f64, Option<&'a [f64]>, &'a [Range]);

    /// `getBucketRange` cases of the SDK test suite: (variations, coverage, weights) → ranges.
    #[test]
    fn bucket_ranges_like_the_sdk_test_suite() {
        let cases: &[RangeCase] = &[
            ("normal 50/50", 2, 1.0, None, &[(0.0, 0.5), (0.5, 1.0)]),
            (
                "reduced coverage",
                2,
                0.5,
                None,
                &[(0.0, 0.25), (0.5, 0.75)],
            ),
            ("zero coverage", 2, 0.0, None, &[(0.0, 0.0), (0.5, 0.5)]),
            (
                "4 variations",
                4,
                1.0,
                None,
                &[(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)],
            ),
            (
                "uneven weights",
                2,
                1.0,
                Some(&[0.4, 0.6]),
                &[(0.0, 0.4), (0.4, 1.0)],
            ),
            (
                "uneven weights, 3 variations",
                3,
                1.0,
                Some(&[0.2, 0.3, 0.5]),
                &[(0.0, 0.2), (0.2, 0.5), (0.5, 1.0)],
            ),
            (
                "uneven weights, reduced coverage, 3 variations",
                3,
                0.2,
                Some(&[0.2, 0.3, 0.5]),
                &[(0.0, 0.04), (0.2, 0.26), (0.5, 0.6)],
            ),
            (
                "negative coverage",
                2,
                -0.2,
                None,
                &[(0.0, 0.0), (0.5, 0.5)],
            ),
            ("coverage above 1", 2, 1.5, None, &[(0.0, 0.5), (0.5, 1.0)]),
            (
                "weights sum below 1",
                2,
                1.0,
                Some(&[0.4, 0.1]),
                &[(0.0, 0.5), (0.5, 1.0)],
            ),
            (
                "weights sum above 1",
                2,
                1.0,
                Some(&[0.7, 0.6]),
                &[(0.0, 0.5), (0.5, 1.0)],
            ),
            (
                "weights.length not equal to num variations",
                4,
                1.0,
                Some(&[0.4, 0.4, 0.2]),
                &[(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)],
            ),
            (
                "weights sum almost equals 1",
                2,
                1.0,
                Some(&[0.4, 0.5999]),
                &[(0.0, 0.4), (0.4, 0.9999)],
            ),
            ("no variations", 0, 1.0, None, &[]),
        ];
        for (name, n, coverage, weights, expected) in cases {
            let got = bucket_ranges(*n, *coverage, *weights);
            assert!(close(&got, expected), "{name}: {got:?} != {expected:?}");
        }
    }

    /// `chooseVariation` cases of the SDK test suite.
    #[test]
    fn chooses_like_the_sdk_test_suite() {
        let even: &[Range] = &[(0.0, 0.5), (0.5, 1.0)];
        let reduced: &[Range] = &[(0.0, 0.25), (0.5, 0.75)];
        let zero: &[Range] = &[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0)];
        let cases: &[(f64, &[Range], Option<usize>)] = &[
            (0.2, even, Some(0)),
            (0.4, even, Some(0)),
            (0.6, even, Some(1)),
            (0.8, even, Some(1)),
            (0.0, even, Some(0)),
            (0.5, even, Some(1)),
            (0.2, reduced, Some(0)),
            (0.4, reduced, None),
            (0.6, reduced, Some(1)),
            (0.8, reduced, None),
            (0.25, reduced, None),
            (0.5, reduced, Some(1)),
            (0.5, zero, Some(2)),
        ];
        for (n, ranges, expected) in cases {
            assert_eq!(choose_variation(*n, ranges), *expected, "{n} in {ranges:?}");
        }
    }

    /// `inNamespace` cases of the SDK test suite.
    #[test]
    fn namespaces_like_the_sdk_test_suite() {
        let cases: &[(&str, &str, f64, f64, bool)] = &[
            ("1", "namespace1", 0.0, 0.4, false),
            ("1", "namespace1", 0.4, 1.0, true),
            ("1", "namespace2", 0.0, 0.4, false),
            ("1", "namespace2", 0.4, 1.0, true),
            ("2", "namespace1", 0.0, 0.4, false),
            ("2", "namespace1", 0.4, 1.0, true),
            ("2", "namespace2", 0.0, 0.4, false),
            ("2", "namespace2", 0.4, 1.0, true),
            ("3", "namespace1", 0.0, 0.4, false),
            ("3", "namespace1", 0.4, 1.0, true),
            ("3", "namespace2", 0.0, 0.4, true),
            ("3", "namespace2", 0.4, 1.0, false),
            ("4", "namespace1", 0.0, 0.4, false),
            ("4", "namespace1", 0.4, 1.0, true),
            ("4", "namespace2", 0.0, 0.4, true),
            ("4", "namespace2", 0.4, 1.0, false),
        ];
        for (user, ns, start, end, expected) in cases {
            assert_eq!(
                in_namespace(user, ns, *start, *end),
                *expected,
                "user {user} in {ns} [{start}, {end})"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the input, a bucket is in [0, 1) and ranges never overlap or leave [0, 1].
        #[test]
        fn buckets_and_ranges_stay_in_the_unit_interval(
            seed in ".{0,12}",
            value in ".{0,12}",
            version in 1u32..=2,
            weights in proptest::collection::vec(0.0f64..1.0, 2..6),
            coverage in -0.5f64..1.5,
        ) {
            let n = hash(&seed, &value, version).expect("known version");
            proptest::prop_assert!((0.0..1.0).contains(&n));
            let total: f64 = weights.iter().sum();
            proptest::prop_assume!(total > 1e-6);
            let normalised: Vec<f64> = weights.iter().map(|w| w / total).collect();
            let ranges = bucket_ranges(normalised.len(), coverage, Some(&normalised));
            for pair in ranges.windows(2) {
                proptest::prop_assert!(pair[0].1 <= pair[1].0 + 1e-12);
            }
            for r in &ranges {
                proptest::prop_assert!(r.0 >= 0.0 && r.1 <= 1.0 + 1e-9 && r.0 <= r.1);
            }
        }
    }
}
