//! The chat template of `POST /v1/chat/completions`. dctk models are base models: they were
//! never tuned on a chat format, so the template is the plainest transcript a base model
//! has seen in web text, and it is fixed and documented rather than learned:
//!
//! ```text
//! System: {content}\n\n        (one block per message, role capitalised)
//! User: {content}\n\n
//! Assistant: {content}\n\n
//! Assistant:                    (the prompt ends here; the model writes the reply)
//! ```
//!
//! Each message becomes `"{Role}: {content}\n\n"` with its role capitalised (`system` →
//! `System`, `user` → `User`, `assistant` → `Assistant`); the prompt ends with
//! `"Assistant:"`. The reply stops at [`CHAT_STOP`] (`"\n\nUser:"`, the model starting the
//! user's next turn), which is added to the request's own stop sequences, and at end-of-text.
//! The reply's leading space (the model continues `"Assistant:"` with `" …"`) is kept as
//! generated, so a streamed reply and the non-streamed one are the same characters.

/// The stop sequence every chat completion gets: the model starting the user's next turn.
pub const CHAT_STOP: &str = "\n\nUser:";

/// The roles a message may have. `developer` (OpenAI's newer name for `system`) renders as
/// `System`.
pub const ROLES: [&str; 4] = ["system", "developer", "user", "assistant"];

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The name a role is written with in the transcript, or `None` for a role the template
/// does not know.
pub fn role_label(role: &str) -> Option<&'static str> {
    match role {
        "system" | "developer" => Some("System"),
        "user" => Some("User"),
        "assistant" => Some("Assistant"),
        _ => None,
    }
}

/// The prompt a chat renders to. Every message's role must be one of [`ROLES`] (the server
/// checks this before it renders, naming the message).
pub fn render(messages: &[ChatMessage]) -> String {
    let mut prompt = String::new();
    for m in messages {
        let label = role_label(&m.role).unwrap_or("User");
        prompt.push_str(label);
        prompt.push_str(": ");
        prompt.push_str(&m.content);
        prompt.push_str("\n\n");
    }
    prompt.push_str("Assistant:");
    prompt
}

/// The request's stop sequences with [`CHAT_STOP`] added (once).
pub fn stop_sequences(mut requested: Vec<String>) -> Vec<String> {
    if !requested.iter().any(|s| s == CHAT_STOP) {
        requested.push(CHAT_STOP.to_string());
    }
    requested
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn renders_the_documented_transcript() {
        let p = render(&[msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello."), msg("user", "Why?")]);
        assert_eq!(p, "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Why?\n\nAssistant:");
        assert_eq!(render(&[msg("developer", "x")]), "System: x\n\nAssistant:");
    }

    #[test]
    fn adds_the_chat_stop_once() {
        assert_eq!(stop_sequences(vec!["END".into()]), vec!["END".to_string(), CHAT_STOP.to_string()]);
        assert_eq!(stop_sequences(vec![CHAT_STOP.into()]), vec![CHAT_STOP.to_string()]);
        assert_eq!(role_label("tool"), None);
    }
}
