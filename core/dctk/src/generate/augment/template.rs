//! The `template` augmenter: one prompt template, G samples per document, each answer one
//! output document. What `generate(#{ template: … })` runs when no `augmenter` is given.
use serde_json::{json, Map, Value};

use super::{check_keys, render, string_setting, AugAnswer, AugDoc, AugRequest, Augmenter, Scorer, SourceText};
use anyhow::Result;

/// The placeholder a template must contain.
pub const DOCUMENT_PLACEHOLDER: &str = "{document}";

/// G samples of one template per document (plain prompting; the single-style form of WRAP,
/// Maini et al. 2024, arXiv 2401.16380, §3: a prompt with the document, one answer per
/// generated document).
pub struct TemplateAugmenter {
    pub template: String,
    pub template_name: String,
    pub n_per_doc: usize,
}

impl TemplateAugmenter {
    /// Settings `template` (must contain `{document}`) and `template_name`.
    pub fn from_settings(settings: &Map<String, Value>, n_per_doc: usize) -> Result<TemplateAugmenter, String> {
        check_keys(settings, &["template", "template_name"])?;
        let template = match settings.get("template") {
            Some(Value::String(t)) => t.clone(),
            Some(other) => return Err(format!("key \"augmenter.template\": expected a string, got {other}")),
            None => return Err("key \"augmenter.template\": missing (a prompt with {document})".into()),
        };
        let template_name = string_setting(settings, "template_name", "template")?;
        TemplateAugmenter::new(template, template_name, n_per_doc)
    }

    /// Errors (naming the `template` key and the template's name) when `{document}` is missing.
    pub fn new(template: String, template_name: String, n_per_doc: usize) -> Result<TemplateAugmenter, String> {
        if !template.contains(DOCUMENT_PLACEHOLDER) {
            return Err(format!("key \"template\": the template \"{template_name}\" has no {DOCUMENT_PLACEHOLDER} placeholder (where each source document goes)"));
        }
        Ok(TemplateAugmenter { template, template_name, n_per_doc })
    }

    fn blake3(&self) -> String {
        blake3::hash(self.template.as_bytes()).to_hex().to_string()
    }
}

impl Augmenter for TemplateAugmenter {
    fn name(&self) -> &str {
        "template"
    }

    fn identity(&self) -> Value {
        json!({"name": "template", "template": self.template, "template_name": self.template_name})
    }

    fn plan(&self, doc: &SourceText) -> Result<Vec<AugRequest>> {
        let prompt = render(&self.template, &[(DOCUMENT_PLACEHOLDER, doc.text)]);
        Ok((0..self.n_per_doc).map(|j| AugRequest::new(prompt.clone(), format!("sample={j}"))).collect())
    }

    fn assemble(&self, _doc: &SourceText, answers: &[AugAnswer], _scorer: Option<&dyn Scorer>) -> Result<Vec<AugDoc>> {
        let template = json!({"name": self.template_name, "blake3": self.blake3()});
        Ok(answers
            .iter()
            .enumerate()
            .map(|(j, a)| AugDoc { meta: json!({"template": template, "sample": j}), ..AugDoc::new(a.text.to_string(), vec![j]) })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_g_samples_and_keeps_each_answer() {
        let a = TemplateAugmenter::new("Rephrase: {document}\n".into(), "r".into(), 3).unwrap();
        let doc = SourceText { domain: "web", index: 0, key: 1, text: "hello" };
        let plan = a.plan(&doc).unwrap();
        assert_eq!(plan.len(), 3);
        assert!(plan.iter().all(|r| r.prompt == "Rephrase: hello\n"));
        let answers: Vec<AugAnswer> = ["a", "b", "c"].iter().map(|t| AugAnswer { text: t, finish_reason: "stop" }).collect();
        let docs = a.assemble(&doc, &answers, None).unwrap();
        assert_eq!(docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(docs[2].uses, vec![2]);
        let e = TemplateAugmenter::new("no placeholder".into(), "mine".into(), 1).err().unwrap();
        assert!(e.contains("key \"template\"") && e.contains("\"mine\"") && e.contains("{document}"), "{e}");
    }
}
