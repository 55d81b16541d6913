//! The tokenizer files of a Hugging Face export: `tokenizer.json`, `tokenizer_config.json` and
//! `special_tokens_map.json`, made so that `AutoTokenizer` encodes every text to exactly the
//! ids dctk trained on.
//!
//! - `hf` / `bpe` corpora already carry a Hugging Face `tokenizer.json`; it is copied, with its
//!   post-processor removed: dctk encodes documents without special tokens (documents are
//!   separated by end-of-text, never prefixed with a BOS), so an exported tokenizer that added
//!   one would feed the model ids it never saw in that place.
//! - The built-in `gpt2` tokenizer is tiktoken's `r50k_base`, which has no Hugging Face file.
//!   We build GPT-2's byte-level BPE from its ranks: the vocabulary is each rank's bytes through
//!   GPT-2's byte↔unicode map (Radford et al. 2019, "Language Models are Unsupervised Multitask
//!   Learners", §2.2; the map of openai/gpt-2 `encoder.py` `bytes_to_unicode`), and the merges
//!   are recovered from the ranks: a multi-byte token of rank r is the merge of the two parts
//!   that byte-pair encoding (Sennrich, Haddow, Birch 2016) of its bytes with the ranks below r
//!   stops at. Listed in rank order, they make the `tokenizers` BPE merge exactly as tiktoken
//!   does (checked by the tests below on real text).
use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use dctk_data::Tokenizer;

/// The three tokenizer files, as JSON text.
pub struct TokenizerFiles {
    pub tokenizer_json: String,
    pub tokenizer_config_json: String,
    pub special_tokens_map_json: String,
}

/// The tokenizer files for `tokenizer` with end-of-text `eot_id`, for a model of context
/// `max_seq_len` tokens.
pub fn tokenizer_files(tokenizer: &Tokenizer, eot_id: u32, max_seq_len: i64) -> Result<TokenizerFiles> {
    let (tokenizer_json, tokenizer_class, eot_token, unk_is_eot) = match tokenizer.kind() {
        "gpt2" => (gpt2_tokenizer_json()?, "GPT2TokenizerFast", "<|endoftext|>".to_string(), true),
        kind @ ("hf" | "bpe") => {
            let text = tokenizer
                .to_json()
                .with_context(|| format!("the run's `{kind}` tokenizer has no tokenizer.json text"))?;
            let (json, eot_token) = without_post_processor(text, eot_id)?;
            (json, "PreTrainedTokenizerFast", eot_token, false)
        }
        other => bail!("tokenizer kind `{other}`: the Hugging Face export knows gpt2, hf and bpe"),
    };
    // What we write must load where it will be used: the same `tokenizers` library
    // `transformers` runs on.
    <tokenizers::Tokenizer as std::str::FromStr>::from_str(&tokenizer_json)
        .map_err(|e| anyhow::anyhow!("the exported tokenizer.json does not load: {e}"))?;
    let mut special = serde_json::Map::new();
    special.insert("bos_token".into(), json!(eot_token));
    special.insert("eos_token".into(), json!(eot_token));
    if unk_is_eot {
        // GPT-2's convention: the byte-level vocabulary has no unknowns, so unk is end-of-text.
        special.insert("unk_token".into(), json!(eot_token));
    }
    let mut config = special.clone();
    config.insert("tokenizer_class".into(), json!(tokenizer_class));
    config.insert("model_max_length".into(), json!(max_seq_len));
    // dctk's documents start right after an end-of-text, with no BOS and no prefix space.
    config.insert("add_bos_token".into(), json!(false));
    config.insert("add_eos_token".into(), json!(false));
    config.insert("add_prefix_space".into(), json!(false));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    config.insert(
        "added_tokens_decoder".into(),
        json!({ eot_id.to_string(): {
            "content": eot_token, "lstrip": false, "normalized": true, "rstrip": false,
            "single_word": false, "special": true
        }}),
    );
    Ok(TokenizerFiles {
        tokenizer_json,
        tokenizer_config_json: serde_json::to_string_pretty(&Value::Object(config))?,
        special_tokens_map_json: serde_json::to_string_pretty(&Value::Object(special))?,
    })
}

/// `text` (a `tokenizer.json`) with `post_processor: null`, and the content of token `eot_id`.
fn without_post_processor(text: &str, eot_id: u32) -> Result<(String, String)> {
    let mut json: Value = serde_json::from_str(text).context("the run's tokenizer.json is not JSON")?;
    let Some(obj) = json.as_object_mut() else { bail!("the run's tokenizer.json is not a JSON object") };
    obj.insert("post_processor".into(), Value::Null);
    let added = obj.get("added_tokens").and_then(|a| a.as_array()).into_iter().flatten();
    let from_added = added
        .filter(|t| t.get("id").and_then(|i| i.as_u64()) == Some(u64::from(eot_id)))
        .find_map(|t| t.get("content").and_then(|c| c.as_str()).map(str::to_string));
    let from_vocab = || {
        let vocab = obj.get("model")?.get("vocab")?.as_object()?;
        vocab.iter().find(|(_, id)| id.as_u64() == Some(u64::from(eot_id))).map(|(t, _)| t.clone())
    };
    let Some(eot_token) = from_added.or_else(from_vocab) else {
        bail!("the run's tokenizer.json has no token with the end-of-text id {eot_id}");
    };
    Ok((serde_json::to_string(&json)?, eot_token))
}

/// GPT-2's byte → unicode map: printable bytes map to themselves, the others to 256 + n, so
/// every byte string is a printable string without spaces (openai/gpt-2 `bytes_to_unicode`).
pub fn gpt2_byte_to_unicode() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        map[b as usize] = char::from_u32(c).expect("GPT-2's byte map stays below U+0200");
    }
    map
}

/// The Hugging Face `tokenizer.json` of GPT-2's BPE (tiktoken `r50k_base`, ids 0..50256,
/// `<|endoftext|>` = 50256), built from tiktoken's ranks (see the module docs).
pub fn gpt2_tokenizer_json() -> Result<String> {
    let bpe = tiktoken_rs::r50k_base().map_err(|e| anyhow::anyhow!("loading tiktoken r50k_base: {e}"))?;
    let eot_id = dctk_data::GPT2_EOT_ID;
    let mut ranks: Vec<Vec<u8>> = Vec::with_capacity(eot_id as usize);
    for id in 0..eot_id {
        ranks.push(bpe.decode_bytes(&[id]).map_err(|e| anyhow::anyhow!("r50k_base has no id {id}: {e:?}"))?);
    }
    let byte_map = gpt2_byte_to_unicode();
    let show = |bytes: &[u8]| bytes.iter().map(|&b| byte_map[b as usize]).collect::<String>();

    let mut vocab = serde_json::Map::new();
    for (id, bytes) in ranks.iter().enumerate() {
        vocab.insert(show(bytes), json!(id));
    }
    vocab.insert("<|endoftext|>".into(), json!(eot_id));
    let merges: Vec<Value> = recover_merges(&ranks)?
        .into_iter()
        .map(|(a, b)| json!(format!("{} {}", show(a), show(b))))
        .collect();
    let byte_level = |add_prefix_space: bool, trim_offsets: bool| {
        json!({ "type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": true })
    };
    // The layout of GPT-2's own tokenizer.json on the Hub (openai-community/gpt2).
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": eot_id, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": byte_level(false, true),
        "post_processor": byte_level(true, false),
        "decoder": byte_level(true, true),
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": merges
        }
    });
    Ok(serde_json::to_string(&doc)?)
}

/// The merges of a byte-level BPE given its ranks (`ranks[r]` = the bytes of token r; every
/// single byte must be a token), in rank order: for each multi-byte token, the pair of parts
/// that BPE over the lower ranks leaves of its bytes.
pub fn recover_merges(ranks: &[Vec<u8>]) -> Result<Vec<(&[u8], &[u8])>> {
    let rank_of: HashMap<&[u8], usize> = ranks.iter().enumerate().map(|(r, b)| (b.as_slice(), r)).collect();
    let mut merges = Vec::new();
    for (rank, token) in ranks.iter().enumerate() {
        if token.len() < 2 {
            continue;
        }
        // Parts as (start, end) byte ranges of `token`, merged lowest-rank pair first.
        let mut parts: Vec<(usize, usize)> = (0..token.len()).map(|i| (i, i + 1)).collect();
        loop {
            let best = (0..parts.len() - 1)
                .filter_map(|i| rank_of.get(&token[parts[i].0..parts[i + 1].1]).map(|&r| (r, i)))
                .filter(|&(r, _)| r < rank)
                .min();
            let Some((_, i)) = best else { break };
            parts[i].1 = parts[i + 1].1;
            parts.remove(i + 1);
        }
        if parts.len() != 2 {
            bail!("token of rank {rank} ({} bytes) is not the merge of two lower-ranked tokens ({} parts)", token.len(), parts.len());
        }
        merges.push((&token[parts[0].0..parts[0].1], &token[parts[1].0..parts[1].1]));
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// Texts from the bundled corpora (the first documents of each) plus hand-made edge cases.
    fn real_texts() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/corpora");
        let mut texts = vec![
            "Hello world! It's 2026; the café costs €3.50 — ünïcödé, 日本語のテキスト, emoji 🎉🦀.".to_string(),
            "  leading spaces,\ttabs\t\tand\n\nnewlines\r\n  trailing   ".to_string(),
            "digits 1234567890 3.14159 0x7fff 1e-6 ١٢٣ and 'quotes' they're we'll I'd".to_string(),
            "def f(x):\n    return x ** 2  # squared\n\n\nclass A:\n\tpass\n".to_string(),
            format!("{}\n{}\u{a0}\u{200b}\u{feff}", " ".repeat(37), "-".repeat(90)),
        ];
        for file in ["code.jsonl", "dialogue.jsonl", "docs.jsonl", "literature.jsonl", "math.jsonl", "quotes.jsonl", "reference.jsonl"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            for line in text.lines().take(12) {
                let doc: Value = serde_json::from_str(line).unwrap();
                texts.push(doc["text"].as_str().unwrap().to_string());
            }
        }
        texts
    }

    #[test]
    fn gpt2_byte_map_is_a_bijection_onto_printable_chars() {
        let map = gpt2_byte_to_unicode();
        let distinct: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(map[b'A' as usize], 'A');
        // Space and newline are the famous Ġ and Ċ.
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn built_gpt2_tokenizer_encodes_exactly_as_tiktoken() {
        let json = gpt2_tokenizer_json().unwrap();
        let hf = tokenizers::Tokenizer::from_str(&json).unwrap();
        assert_eq!(hf.get_vocab_size(true), 50_257);
        assert_eq!(hf.token_to_id("<|endoftext|>"), Some(50_256));
        let tiktoken = Tokenizer::gpt2().unwrap();
        let texts = real_texts();
        assert!(texts.len() > 80);
        let mut tokens = 0;
        for text in &texts {
            let want = tiktoken.encode(text);
            let got = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "ids differ on {text:?}");
            // And back: the byte-level decoder restores the text.
            assert_eq!(hf.decode(&got, false).unwrap(), *text);
            tokens += want.len();
        }
        assert!(tokens > 5_000, "{tokens} tokens compared");
    }

    #[test]
    fn merges_are_recovered_from_ranks() {
        // A toy BPE: bytes a, b, c, then "ab", "abc", "bc" (lower ranks merge first).
        let ranks: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"ab", b"abc", b"bc"].iter().map(|b| b.to_vec()).collect();
        let merges = recover_merges(&ranks).unwrap();
        assert_eq!(merges, vec![(&b"a"[..], &b"b"[..]), (&b"ab"[..], &b"c"[..]), (&b"b"[..], &b"c"[..])]);
        // A token no two lower ranks make is an error, not a silently wrong merge list.
        let broken: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"abc"].iter().map(|b| b.to_vec()).collect();
        assert!(recover_merges(&broken).is_err());
    }

    #[test]
    fn copied_tokenizer_loses_only_its_post_processor() {
        let text = r#"{"version":"1.0","added_tokens":[{"id":3,"content":"</s>","special":true}],"post_processor":{"type":"TemplateProcessing"},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"</s>":3},"merges":["a b"]}}"#;
        let (json, eot) = without_post_processor(text, 3).unwrap();
        assert_eq!(eot, "</s>");
        let v: Value = serde_json::from_str(&json).unwrap();
        assert!(v["post_processor"].is_null());
        assert_eq!(v["model"]["merges"][0], "a b");
        assert!(without_post_processor(text, 9).unwrap_err().to_string().contains("end-of-text id 9"));
    }
}
