//! The OpenAI-compatible HTTP client of the `openai` generator.
