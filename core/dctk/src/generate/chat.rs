//! The chat template of `POST /v1/chat/completions` (dctk models are base models): see the
//! README, "Generate, serve, export".
