//! BoLT's chunking of a document into (prefix, chunk) pairs: sentence units (paragraphs, then
//! sentences, whitespace kept so the units join back to the text) grouped into chunks of
//! random length min(Poisson(λ − 1) + 1, 20, remaining), λ = 8, with a per-document seed from
//! the text's MD5 (Ruan, Band, Maddison, Hashimoto 2025, arXiv 2503.18866; authors' release
//! ryoungj/BoLT @024315f, `apps/main/gen_utils/chunk_gen.py`, `configs/gen/gpt_latent_thoughts.yaml`).
//!
//! Two parts cannot be byte-identical to the release and are documented where they differ:
//! the sentence splitter (the release calls NLTK's untrained `PunktSentenceTokenizer`; here a
//! Punkt-like rule set written for dctk, [`sentences`]) and the random stream (the release
//! draws from numpy's PCG64 `default_rng`; here ChaCha20 (`rand_chacha`) seeded with the same
//! 32-bit seed, and Knuth's product-of-uniforms Poisson sampler, [`chunk_lengths`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// λ: mean units per chunk (`units_per_chunk` in the release's config).
pub const UNITS_PER_CHUNK: u32 = 8;
/// Fewest units in a chunk (`min_num_units_per_chunk`).
pub const MIN_UNITS_PER_CHUNK: u32 = 1;
/// Most units in a chunk (`max_num_units_per_chunk`).
pub const MAX_UNITS_PER_CHUNK: u32 = 20;
/// Added to the text's hash to make the chunking seed (`chunk_seed`).
pub const CHUNK_SEED: u32 = 42;

/// A document cut into sentence units and chunks of consecutive units.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunking {
    /// The sentence units; `units.concat()` is the document.
    pub units: Vec<String>,
    /// Chunk `i` is `units[bounds[i] .. bounds[i + 1]]`; `bounds[0] = 0`, last = units.len().
    pub bounds: Vec<usize>,
    /// The seed the chunk lengths were drawn with.
    pub seed: u32,
}

impl Chunking {
    /// BoLT's chunking of `text` (module doc): [`units`], then [`chunk_lengths`] seeded by
    /// [`chunk_seed`].
    pub fn of(text: &str) -> Chunking {
        let units = units(text);
        let seed = chunk_seed(text);
        let lengths = chunk_lengths(units.len(), seed);
        let mut bounds = vec![0];
        for l in lengths {
            bounds.push(bounds.last().copied().unwrap_or(0) + l);
        }
        Chunking { units, bounds, seed }
    }

    pub fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of chunk `i` (the suffix x_i).
    pub fn chunk(&self, i: usize) -> String {
        self.units[self.bounds[i]..self.bounds[i + 1]].concat()
    }

    /// The prefix of chunk `i`: the previous `prefix_chunks` chunks joined, or `"N/A"` for
    /// chunk 0 (the release's `num_prefix_context_units` counts chunk boundaries, not units).
    pub fn prefix(&self, i: usize, prefix_chunks: usize) -> String {
        if i == 0 {
            return "N/A".to_string();
        }
        let start = self.bounds[i.saturating_sub(prefix_chunks.max(1))];
        self.units[start..self.bounds[i]].concat()
    }

    /// Every chunk's text, in order (they join back to the document).
    pub fn chunks(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.chunk(i)).collect()
    }
}

/// The per-document chunking seed: (MD5(text) as a 128-bit integer + 42) & 0xFFFFFFFF, as
/// the release computes it (`int(hashlib.md5(text.encode()).hexdigest(), 16) + chunk_seed`):
/// the low 32 bits of the digest read big-endian, plus 42, wrapping.
pub fn chunk_seed(text: &str) -> u32 {
    let d = md5(text.as_bytes());
    u32::from_be_bytes([d[12], d[13], d[14], d[15]]).wrapping_add(CHUNK_SEED)
}

/// Chunk lengths (in units) covering `total_units`: each min(Poisson(λ − 1) + 1, 20,
/// remaining) with λ = [`UNITS_PER_CHUNK`], as in the release's `chunked_generation_wrapper`.
/// The stream is ChaCha20 (`rand_chacha::ChaCha20Rng::seed_from_u64(seed)`), Poisson by
/// Knuth's method (multiply uniforms until the product falls below e^(−λ)): reproducible in
/// Rust across machines, though not numpy's draws.
pub fn chunk_lengths(total_units: usize, seed: u32) -> Vec<usize> {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
    let mean = f64::from(UNITS_PER_CHUNK - MIN_UNITS_PER_CHUNK);
    let floor = (-mean).exp();
    let mut remaining = total_units;
    let mut out = Vec::new();
    while remaining > 0 {
        let mut k = 0usize;
        let mut p = 1.0f64;
        loop {
            p *= rng.random::<f64>();
            if p <= floor {
                break;
            }
            k += 1;
        }
        let len = (k + MIN_UNITS_PER_CHUNK as usize).min(MAX_UNITS_PER_CHUNK as usize).min(remaining);
        out.push(len);
        remaining -= len;
    }
    out
}

/// The sentence units of `text`: [`paragraphs`], each split into [`sentences`]. Joined, they
/// are `text` exactly.
pub fn units(text: &str) -> Vec<String> {
    paragraphs(text).into_iter().flat_map(sentences).map(str::to_string).collect()
}

/// Paragraphs as the release's `re.findall(r'[^\n\r].*?(?:\n\s*\n|\s*$)', text, re.DOTALL)`
/// finds them: from a character that is not a line break, lazily up to (and including) a
/// blank line `\n\s*\n` (greedy: through the last newline of the whitespace run) or the
/// trailing whitespace of the text. Where `findall` would drop characters (line breaks before
/// the first paragraph, a `\r` left after a blank line) they are kept, on the first paragraph
/// or the previous one, so the paragraphs always join back to the text.
pub fn paragraphs(text: &str) -> Vec<&str> {
    // Where the text's trailing whitespace begins: `\s*$` matches from any position at or past it.
    let tail = text.char_indices().rev().take_while(|(_, c)| c.is_whitespace()).last().map_or(text.len(), |(i, _)| i);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some((start, c)) = text[pos..].char_indices().find(|(_, c)| *c != '\n' && *c != '\r').map(|(i, c)| (i + pos, c)) else {
            break;
        };
        let mut i = start + c.len_utf8();
        let end = loop {
            // The alternatives in the regex's order: a blank line first, then the tail.
            if i < text.len() && text.as_bytes()[i] == b'\n' {
                let run_end = text[i..].char_indices().find(|(_, c)| !c.is_whitespace()).map_or(text.len(), |(k, _)| i + k);
                if let Some(last_nl) = text[i + 1..run_end].rfind('\n') {
                    break i + 1 + last_nl + 1;
                }
            }
            if i >= tail {
                break text.len();
            }
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        };
        spans.push((start, end));
        pos = end;
    }
    if spans.is_empty() {
        return if text.is_empty() { Vec::new() } else { vec![text] };
    }
    // Close the gaps: text before the first span joins it, any later gap joins the span before.
    let n = spans.len();
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let from = if k == 0 { 0 } else { spans[k].0 };
        let to = if k + 1 < n { spans[k + 1].0 } else { text.len() };
        out.push(&text[from..to]);
    }
    out
}

/// Characters that may close a sentence after its final punctuation (quotes, brackets); Punkt
/// realigns them onto the sentence they close.
fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '’' | '”' | '»')
}

/// Characters that may open a word before its letters (stripped when classifying it).
fn is_opening(c: char) -> bool {
    matches!(c, '"' | '\'' | '(' | '[' | '{' | '‘' | '“' | '«')
}

/// A Punkt-like sentence splitter (Kiss & Strunk 2006, "Unsupervised multilingual sentence
/// boundary detection", as NLTK's *untrained* `PunktSentenceTokenizer().span_tokenize`
/// behaves, which is what the BoLT release calls): a sentence ends after a run of `.`, `?`,
/// `!` (and any closing quotes or brackets) that is followed by whitespace and a next token,
/// except
/// * an ellipsis (two or more periods, no `?`/`!`): untrained Punkt never breaks after one;
/// * a single-letter initial (`J.`) followed by a word starting with a letter (Punkt's
///   orthographic heuristic with no learned context);
/// * a number (`3.`) followed by a word starting lowercase.
///
/// Untrained Punkt knows no abbreviations, so neither does this (`Dr. Smith` splits). As in
/// the release, the whitespace between sentences starts the next unit and text after the last
/// sentence joins it, so the units join back to `text`.
pub fn sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut cuts: Vec<usize> = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k].1;
        if !matches!(c, '.' | '?' | '!') {
            k += 1;
            continue;
        }
        // The run of end punctuation, then closing characters.
        let run_start = k;
        while k < chars.len() && matches!(chars[k].1, '.' | '?' | '!') {
            k += 1;
        }
        let run: String = chars[run_start..k].iter().map(|(_, c)| c).collect();
        while k < chars.len() && is_closing(chars[k].1) {
            k += 1;
        }
        let end = chars.get(k).map_or(text.len(), |(i, _)| *i);
        // It must be followed by whitespace, then a next token.
        let mut j = k;
        if j >= chars.len() || !chars[j].1.is_whitespace() {
            continue;
        }
        while j < chars.len() && chars[j].1.is_whitespace() {
            j += 1;
        }
        let Some(&(_, next)) = chars.get(j) else { continue };
        let strong = run.contains('?') || run.contains('!');
        if !strong {
            if run.len() >= 2 {
                continue; // ellipsis
            }
            // The word the period ends, without opening punctuation.
            let word_start = chars[..run_start].iter().rposition(|(_, c)| c.is_whitespace()).map_or(0, |p| p + 1);
            let word: String = chars[word_start..run_start].iter().map(|(_, c)| *c).skip_while(|c| is_opening(*c)).collect();
            let mut wc = word.chars();
            let initial = matches!((wc.next(), wc.next()), (Some(a), None) if a.is_alphabetic());
            let number = !word.is_empty() && word.chars().any(|c| c.is_ascii_digit()) && word.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-'));
            if initial && next.is_alphabetic() {
                continue;
            }
            if number && next.is_lowercase() {
                continue;
            }
        }
        cuts.push(end);
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for c in cuts {
        if c > last {
            out.push(&text[last..c]);
            last = c;
        }
    }
    if last < text.len() {
        out.push(&text[last..]);
    }
    out
}

/// MD5 (Rivest 1992, RFC 1321) of `data`: the release's per-document chunk seed hashes the
/// text with it, and no MD5 crate is in dctk's offline dependency tree.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16,
        23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(|sin(i + 1)| · 2^32), RFC 1321 §3.4.
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let (mut a0, mut b0, mut c0, mut d0) = (0x6745_2301u32, 0xefcd_ab89u32, 0x98ba_dcfeu32, 0x1032_5476u32);
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for block in msg.chunks_exact(64) {
        let m: Vec<u32> = block.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(md5(b"The quick brown fox jumps over the lazy dog")), "9e107d9d372bb6826bd81d3542a419d6");
        // Two blocks (RFC 1321 test suite).
        assert_eq!(hex(md5(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890")), "57edf4a22be3c955ac49da2e2107b67a");
    }

    #[test]
    fn seed_is_low_32_bits_of_md5_plus_42() {
        // md5("abc") ends in ...28e17f72: 0x28e17f72 + 42.
        assert_eq!(chunk_seed("abc"), 0x28e1_7f72 + 42);
        // md5("") ends in ...f8427e: 0xecf8427e + 42.
        assert_eq!(chunk_seed(""), 0xecf8_427eu32.wrapping_add(42));
    }

    #[test]
    fn paragraphs_follow_the_release_regex_and_join_back() {
        let t = "First para line one.\nline two.\n\nSecond para.\n \n\nThird.  \n";
        let p = paragraphs(t);
        assert_eq!(p, vec!["First para line one.\nline two.\n\n", "Second para.\n \n\n", "Third.  \n"]);
        // Leading line breaks (dropped by findall) stay on the first paragraph.
        assert_eq!(paragraphs("\n\nA.\n\nB."), vec!["\n\nA.\n\n", "B."]);
        assert_eq!(paragraphs(""), Vec::<&str>::new());
        assert_eq!(paragraphs("\n\n"), vec!["\n\n"]);
    }

    #[test]
    fn sentences_keep_whitespace_as_the_next_units_prefix() {
        let s = sentences("It rained. Then it stopped!  \"Why?\" she asked. Done");
        assert_eq!(s, vec!["It rained.", " Then it stopped!", "  \"Why?\"", " she asked.", " Done"]);
        // Initials, numbers before lowercase, ellipses and decimals do not end a sentence.
        let s = sentences("J. R. Tolkien wrote it in 1937. in print... and 3.14 is pi. Yes.");
        assert_eq!(s, vec!["J. R. Tolkien wrote it in 1937. in print... and 3.14 is pi.", " Yes."]);
        // Trailing whitespace joins the last unit.
        assert_eq!(sentences("One. Two.\n\n"), vec!["One.", " Two.\n\n"]);
    }

    #[test]
    fn units_join_back_to_the_text() {
        let texts = [
            "Let x = 2. Then x^2 = 4.\n\nHence the claim! Is it? Yes.\r\n\r\nDone.\n",
            "\n\n  leading space. and lowercase after.\n\n\n\nlast",
            "no punctuation at all",
            "Ünïcödé. Ça va? Oui… d'accord.\n\n\r\nFin.",
            "",
        ];
        for t in texts {
            assert_eq!(units(t).concat(), t, "{t:?}");
            let c = Chunking::of(t);
            assert_eq!(c.chunks().concat(), t);
        }
    }

    #[test]
    fn chunk_lengths_reproduce_from_the_seed_and_stay_in_1_to_20() {
        for seed in [0u32, 1, 42, 0xdead_beef] {
            let a = chunk_lengths(500, seed);
            assert_eq!(a, chunk_lengths(500, seed));
            assert_eq!(a.iter().sum::<usize>(), 500);
            assert!(a.iter().all(|&l| (1..=20).contains(&l)), "{a:?}");
            // Poisson(7) + 1 has mean 8: the chunk count is near 500 / 8.
            assert!((45..=85).contains(&a.len()), "{} chunks", a.len());
        }
        assert_ne!(chunk_lengths(500, 1), chunk_lengths(500, 2));
        assert_eq!(chunk_lengths(0, 7), Vec::<usize>::new());
        // The last chunk is cut to what remains.
        assert_eq!(chunk_lengths(1, 7), vec![1]);
    }

    #[test]
    fn chunking_boundaries_reproduce_and_prefixes_take_previous_chunks() {
        let text: String = (0..60).map(|i| format!("Sentence number {i} is here. ")).collect();
        let a = Chunking::of(&text);
        let b = Chunking::of(&text);
        assert_eq!(a, b);
        assert_eq!(a.seed, chunk_seed(&text));
        assert_eq!(a.units.len(), 60);
        assert!(a.len() >= 2);
        assert_eq!(a.prefix(0, 3), "N/A");
        assert_eq!(a.prefix(1, 3), a.chunk(0));
        let i = a.len() - 1;
        let expect: String = (i.saturating_sub(3)..i).map(|j| a.chunk(j)).collect();
        assert_eq!(a.prefix(i, 3), expect);
    }
}
