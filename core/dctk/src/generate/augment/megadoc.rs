//! Synthetic megadocs (Kim, Kotha, Choi, Hashimoto, Haber, Liang 2026, arXiv 2603.18534):
//! `megadoc_stitch` (the G WRAP rephrases of one document concatenated into one long
//! document), its control `megadoc_simple` (the same rephrases as G separate documents,
//! shuffled across the cell), and `megadoc_stretch` (the document split into G+1
//! equal-token pieces with G generated rationales inserted between them).
use serde_json::{json, Map, Value};

use super::rephrase::Rephrase;
use super::{check_keys, render, string_setting, AugAnswer, AugDoc, AugRequest, Augmenter, Scorer, SourceText, TokenSplitter};
use anyhow::{bail, Result};

/// Kim et al. 2026 (arXiv 2603.18534), "stitched" megadocs (§4.2 streams w2/b4…b32): the G
/// WRAP rephrases (Maini et al. 2024, arXiv 2401.16380) of one source document, in request
/// order, joined by `separator` (default "\n\n") into ONE document. Plans exactly the
/// requests of `megadoc_simple` and `rephrase` with the same settings.
pub struct MegadocStitch {
    pub rephrase: Rephrase,
    pub separator: String,
}

impl MegadocStitch {
    /// `rephrase`'s settings (`styles`, `templates`) and `separator`.
    pub fn from_settings(settings: &Map<String, Value>, n_per_doc: usize) -> Result<MegadocStitch, String> {
        let rephrase = Rephrase::from_settings(settings, n_per_doc, &["separator"])?;
        Ok(MegadocStitch { rephrase, separator: string_setting(settings, "separator", "\n\n")? })
    }
}

impl Augmenter for MegadocStitch {
    fn name(&self) -> &str {
        "megadoc_stitch"
    }

    fn identity(&self) -> Value {
        json!({"name": "megadoc_stitch", "settings": self.rephrase.identity_fields(), "separator": self.separator})
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        Ok(self.rephrase.requests(doc))
    }

    fn assemble(&self, _doc: &SourceText, answers: &[AugAnswer], _scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        let text = answers.iter().map(|a| a.text).collect::<Vec<_>>().join(&self.separator);
        let styles: Vec<&str> = (0..answers.len()).map(|j| self.rephrase.style(j)).collect();
        Ok(vec![AugDoc { meta: json!({"styles": styles}), ..AugDoc::new(text, (0..answers.len()).collect()) }])
    }
}

/// Kim et al. 2026 (arXiv 2603.18534), the "simple" control of stitched megadocs (§4.2
/// streams w2s/s4…s32): the same G rephrases as `megadoc_stitch` (same prompts and seeds,
/// so the request cache shares them) as G separate documents, shuffled across the cell.
pub struct MegadocSimple {
    pub rephrase: Rephrase,
}

impl MegadocSimple {
    /// `rephrase`'s settings.
    pub fn from_settings(settings: &Map<String, Value>, n_per_doc: usize) -> Result<MegadocSimple, String> {
        Ok(MegadocSimple { rephrase: Rephrase::from_settings(settings, n_per_doc, &[])? })
    }
}

impl Augmenter for MegadocSimple {
    fn name(&self) -> &str {
        "megadoc_simple"
    }

    fn identity(&self) -> Value {
        json!({"name": "megadoc_simple", "settings": self.rephrase.identity_fields()})
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        Ok(self.rephrase.requests(doc))
    }

    fn assemble(&self, doc: &SourceText, answers: &[AugAnswer], scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        self.rephrase.assemble(doc, answers, scorer)
    }

    fn shuffles_output(&self) -> bool {
        true
    }
}

/// The default rationale prompt of `megadoc_stretch`.
pub const DEFAULT_STRETCH_TEMPLATE: &str = "The following text is missing a passage of reasoning between its beginning and its end. Write the thoughts that lead from the beginning to the end.\n\nBeginning:\n{prefix}\n\nEnd:\n{suffix}\n\nThoughts:\n";

/// The keys `megadoc_stretch` accepts.
pub const STRETCH_KEYS: &[&str] = &["template", "open", "close"];

/// Kim et al. 2026 (arXiv 2603.18534), "stretched" megadocs (§4.3 stretching format
/// `piece0<think>t1</think>piece1…`): the document is split into G+1 pieces of equal
/// tokens (source corpus tokenizer); rationale k+1 (k = 0..G) is asked with `{prefix}` =
/// pieces[..=k] and `{suffix}` = pieces[k+1..], and inserted between piece k and piece k+1
/// inside `open`/`close` (default `<think>`/`</think>`). One output document per source.
pub struct MegadocStretch {
    pub template: String,
    pub open: String,
    pub close: String,
    pub n_per_doc: usize,
    splitter: TokenSplitter,
}

impl MegadocStretch {
    /// Settings `template` (with `{prefix}` and `{suffix}`), `open`, `close`.
    pub fn from_settings(settings: &Map<String, Value>, n_per_doc: usize, splitter: TokenSplitter) -> Result<MegadocStretch, String> {
        check_keys(settings, STRETCH_KEYS)?;
        let template = string_setting(settings, "template", DEFAULT_STRETCH_TEMPLATE)?;
        for p in ["{prefix}", "{suffix}"] {
            if !template.contains(p) {
                return Err(format!("key \"augmenter.template\": the megadoc_stretch template has no {p} placeholder (the document's pieces before and after the rationale)"));
            }
        }
        Ok(MegadocStretch { template, open: string_setting(settings, "open", "<think>")?, close: string_setting(settings, "close", "</think>")?, n_per_doc, splitter })
    }

    /// The G+1 pieces of a document.
    pub fn pieces(&self, text: &str) -> Vec<String> {
        (self.splitter)(text, self.n_per_doc + 1)
    }
}

impl Augmenter for MegadocStretch {
    fn name(&self) -> &str {
        "megadoc_stretch"
    }

    fn identity(&self) -> Value {
        json!({"name": "megadoc_stretch", "template": self.template, "open": self.open, "close": self.close})
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        let pieces = self.pieces(doc.text);
        Ok((0..self.n_per_doc)
            .map(|k| {
                let (prefix, suffix) = (pieces[..=k].concat(), pieces[k + 1..].concat());
                AugRequest::new(render(&self.template, &[("{prefix}", &prefix), ("{suffix}", &suffix)]), format!("thought={}", k + 1))
            })
            .collect())
    }

    fn assemble(&self, doc: &SourceText, answers: &[AugAnswer], _scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        let pieces = self.pieces(doc.text);
        if answers.len() + 1 != pieces.len() {
            bail!("megadoc_stretch: {} answers for {} pieces (expected pieces − 1)", answers.len(), pieces.len());
        }
        let mut text = pieces[0].clone();
        for (a, piece) in answers.iter().zip(&pieces[1..]) {
            text.push_str(&self.open);
            text.push_str(a.text);
            text.push_str(&self.close);
            text.push_str(piece);
        }
        let piece_bytes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        let mut d = AugDoc::new(text, (0..answers.len()).collect());
        d.meta = json!({"piece_bytes": piece_bytes});
        d.stats.insert("thoughts".into(), answers.len() as f64);
        Ok(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn doc(text: &str) -> SourceText<'_> {
        SourceText { domain: "web", index: 0, key: 1, text }
    }

    fn answers<'a>(texts: &'a [String]) -> Vec<AugAnswer<'a>> {
        texts.iter().map(|t| AugAnswer { text: t, finish_reason: "stop" }).collect()
    }

    #[test]
    fn stitch_is_the_concatenation_of_simples_documents() {
        let (stitch, simple) = (MegadocStitch::from_settings(&Map::new(), 5).unwrap(), MegadocSimple::from_settings(&Map::new(), 5).unwrap());
        let d = doc("A source document.");
        assert_eq!(stitch.plan(&d).unwrap(), simple.plan(&d).unwrap());
        let texts: Vec<String> = (0..5).map(|j| format!("rephrase {j}")).collect();
        let one = stitch.assemble(&d, &answers(&texts), None).unwrap();
        let many = simple.assemble(&d, &answers(&texts), None).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(many.len(), 5);
        assert_eq!(one[0].text, many.iter().map(|d| d.text.as_str()).collect::<Vec<_>>().join("\n\n"));
        assert_eq!(one[0].uses, vec![0, 1, 2, 3, 4]);
        assert!(simple.shuffles_output() && !stitch.shuffles_output());
    }

    #[test]
    fn stretch_conditions_on_prefix_and_suffix_and_interleaves() {
        let t = dctk_data::Tokenizer::gpt2().unwrap();
        let splitter = super::super::token_splitter(t.clone());
        let s = MegadocStretch::from_settings(json!({"template": "P[{prefix}] S[{suffix}]"}).as_object().unwrap(), 3, splitter).unwrap();
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let pieces = s.pieces(text);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| t.encode(p).len() == 3), "{pieces:?}");
        let plan = s.plan(&doc(text)).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0].prompt, format!("P[{}] S[{}]", pieces[0], pieces[1..].concat()));
        assert_eq!(plan[2].prompt, format!("P[{}] S[{}]", pieces[..3].concat(), pieces[3]));
        let thoughts: Vec<String> = (1..=3).map(|k| format!("t{k}")).collect();
        let out = s.assemble(&doc(text), &answers(&thoughts), None).unwrap();
        assert_eq!(out[0].text, format!("{}<think>t1</think>{}<think>t2</think>{}<think>t3</think>{}", pieces[0], pieces[1], pieces[2], pieces[3]));
        let e = MegadocStretch::from_settings(json!({"template": "{prefix} only"}).as_object().unwrap(), 3, Arc::new(|t: &str, _| vec![t.to_string()])).err().unwrap();
        assert!(e.contains("augmenter.template") && e.contains("{suffix}"), "{e}");
    }
}
