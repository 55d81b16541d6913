//! The `rephrase` augmenter: WRAP-style rephrasing (Maini et al. 2024, "Rephrasing the
//! Web", arXiv 2401.16380) with its four styles as editable prompt templates; G
//! generations per document, generation j in style j mod (number of styles).
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::template::DOCUMENT_PLACEHOLDER;
use super::{check_keys, render, AugAnswer, AugDoc, AugRequest, Augmenter, Scorer, SourceText};
use anyhow::Result;

/// The WRAP styles, in the default order.
pub const STYLES: &[&str] = &["wikipedia", "qa", "easy", "erudite"];

/// The default prompt of a WRAP style (Maini et al. 2024, arXiv 2401.16380, §3 and
/// appendix prompts: "like Wikipedia" (medium), question–answer, "easy" (the paper's
/// toddler-vocabulary style), "erudite" (hard)). The wikipedia one is the WRAP rephrase
/// prompt Kim et al. 2026 (arXiv 2603.18534) use for synthetic megadocs.
pub fn default_template(style: &str) -> Option<&'static str> {
    Some(match style {
        "wikipedia" => "For the following document, regardless of its original content or formatting, write a full article of the same content in high quality English language as in texts on Wikipedia:\n\n{document}\n\n",
        "qa" => "Convert the following document into a conversational format with multiple tags of \"Question:\" followed by \"Answer:\":\n\n{document}\n\n",
        "easy" => "For the following document, give me a paraphrase of the same using a very small vocabulary and extremely simple sentences that a toddler will understand:\n\n{document}\n\n",
        "erudite" => "For the following document, give me a paraphrase of the same using very terse and abstruse language that only an erudite scholar will understand. Replace simple words and phrases with rare and complex ones:\n\n{document}\n\n",
        _ => return None,
    })
}

/// The keys `rephrase` accepts (megadoc augmenters add theirs).
pub const KEYS: &[&str] = &["styles", "templates"];

/// WRAP rephrasing (Maini et al. 2024, arXiv 2401.16380): request j of a document asks for
/// a rephrase in style `styles[j mod len]` with that style's template (`{document}`
/// replaced by the document); each answer is one output document.
#[derive(Clone, Debug)]
pub struct Rephrase {
    pub styles: Vec<String>,
    /// The template of every style in `styles`.
    pub templates: BTreeMap<String, String>,
    pub n_per_doc: usize,
}

impl Rephrase {
    /// Settings `styles` (default all four) and `templates` (style → template, overriding
    /// the defaults; a style outside the four needs one). `extra` are further keys the
    /// caller accepts (and reads itself). Errors name the key and the style.
    pub fn from_settings(settings: &Map<String, Value>, n_per_doc: usize, extra: &[&str]) -> Result<Rephrase, String> {
        let known: Vec<&str> = KEYS.iter().chain(extra).copied().collect();
        check_keys(settings, &known)?;
        let mut overrides = BTreeMap::new();
        match settings.get("templates") {
            None => {}
            Some(Value::Object(m)) => {
                for (style, t) in m {
                    let t = t.as_str().ok_or_else(|| format!("key \"augmenter.templates.{style}\": expected a string (a prompt with {DOCUMENT_PLACEHOLDER})"))?;
                    overrides.insert(style.clone(), t.to_string());
                }
            }
            Some(other) => return Err(format!("key \"augmenter.templates\": expected a map #{{ style: \"… {{document}} …\" }}, got {other}")),
        }
        let styles: Vec<String> = match settings.get("styles") {
            None => STYLES.iter().map(|s| s.to_string()).collect(),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("key \"augmenter.styles\": expected style names, got {v}")))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("key \"augmenter.styles\": expected a non-empty array of style names ({}), got {other}", STYLES.join(", "))),
        };
        let mut templates = BTreeMap::new();
        for style in &styles {
            let t = match overrides.get(style) {
                Some(t) => t.clone(),
                None => default_template(style)
                    .ok_or_else(|| format!("key \"augmenter.styles\": style \"{style}\" has no default template ({}); give one in augmenter.templates.{style}", STYLES.join(", ")))?
                    .to_string(),
            };
            if !t.contains(DOCUMENT_PLACEHOLDER) {
                return Err(format!("key \"augmenter.templates.{style}\": the template of style \"{style}\" has no {DOCUMENT_PLACEHOLDER} placeholder (where each source document goes)"));
            }
            templates.insert(style.clone(), t);
        }
        if let Some(style) = overrides.keys().find(|s| !styles.contains(s)) {
            return Err(format!("key \"augmenter.templates.{style}\": style \"{style}\" is not in augmenter.styles ({})", styles.join(", ")));
        }
        Ok(Rephrase { styles, templates, n_per_doc })
    }

    /// The style of request `j`.
    pub fn style(&self, j: usize) -> &str {
        &self.styles[j % self.styles.len()]
    }

    /// The settings part of the identity.
    pub fn identity_fields(&self) -> Value {
        json!({"styles": self.styles, "templates": self.templates})
    }

    /// Request j: the template of style j mod len with the document (shared by `rephrase`,
    /// `megadoc_stitch` and `megadoc_simple`, so the request cache answers all three alike).
    pub fn requests(&self, doc: &SourceText) -> Vec<AugRequest> {
        (0..self.n_per_doc)
            .map(|j| {
                let style = self.style(j);
                AugRequest::new(render(&self.templates[style], &[(DOCUMENT_PLACEHOLDER, doc.text)]), format!("style={style},j={j}"))
            })
            .collect()
    }
}

impl Augmenter for Rephrase {
    fn name(&self) -> &str {
        "rephrase"
    }

    fn identity(&self) -> Value {
        json!({"name": "rephrase", "settings": self.identity_fields()})
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        Ok(self.requests(doc))
    }

    fn assemble(&self, _doc: &SourceText, answers: &[AugAnswer], _scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        Ok(answers
            .iter()
            .enumerate()
            .map(|(j, a)| AugDoc { meta: json!({"style": self.style(j), "j": j}), ..AugDoc::new(a.text.to_string(), vec![j]) })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> SourceText<'static> {
        SourceText { domain: "web", index: 2, key: 9, text: "Cats sleep a lot." }
    }

    #[test]
    fn styles_cycle_and_each_prompt_holds_the_document() {
        let r = Rephrase::from_settings(&Map::new(), 6, &[]).unwrap();
        let plan = r.plan(&doc()).unwrap();
        let tags: Vec<&str> = plan.iter().map(|p| p.tag.as_str()).collect();
        assert_eq!(tags, ["style=wikipedia,j=0", "style=qa,j=1", "style=easy,j=2", "style=erudite,j=3", "style=wikipedia,j=4", "style=qa,j=5"]);
        assert!(plan.iter().all(|p| p.prompt.contains("Cats sleep a lot.")));
        assert!(plan[0].prompt.starts_with("For the following document, regardless of its original content or formatting, write a full article"));
        assert_eq!(plan[0].prompt, plan[4].prompt);
        assert_ne!(plan[0].prompt, plan[1].prompt);
    }

    #[test]
    fn templates_override_and_errors_name_the_style() {
        let s = json!({"styles": ["qa", "mine"], "templates": {"mine": "M: {document}"}});
        let r = Rephrase::from_settings(s.as_object().unwrap(), 2, &[]).unwrap();
        assert_eq!(r.plan(&doc()).unwrap()[1].prompt, "M: Cats sleep a lot.");
        let bad = json!({"templates": {"qa": "no placeholder"}});
        let e = Rephrase::from_settings(bad.as_object().unwrap(), 2, &[]).unwrap_err();
        assert!(e.contains("augmenter.templates.qa") && e.contains("{document}"), "{e}");
        let e = Rephrase::from_settings(json!({"styles": ["poem"]}).as_object().unwrap(), 2, &[]).unwrap_err();
        assert!(e.contains("\"poem\"") && e.contains("augmenter.templates.poem"), "{e}");
        let e = Rephrase::from_settings(json!({"stlyes": ["qa"]}).as_object().unwrap(), 2, &[]).unwrap_err();
        assert!(e.contains("did you mean \"augmenter.styles\""), "{e}");
    }
}
