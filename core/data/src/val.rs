//! Per-domain validation batches: fixed and deterministic, so a per-domain validation loss is
//! comparable across steps and runs. The held-out documents (see [`crate::corpus::Domain::val_docs`])
//! are packed in a fixed order with separators, one pass, no shuffling, no repetition.

use crate::corpus::Subset;
use crate::sampler::{Batch, Cursor, Stream};

/// Iterator over a domain's validation batches. Rows are `seq_len + 1` ids advancing by
/// `seq_len`; the last batch may have fewer rows; iteration stops when fewer than `seq_len + 1`
/// tokens remain in the single pass, or after `max_batches`.
pub struct ValBatches {
    stream: Stream,
    cursor: Cursor,
    left_tokens: u64,
    seq_len: usize,
    batch_size: usize,
    batches_left: usize,
    step: u64,
    cross_doc_attention: bool,
}

impl ValBatches {
    pub fn new(
        val: Subset,
        seq_len: usize,
        batch_size: usize,
        max_batches: usize,
        cross_doc_attention: bool,
    ) -> Self {
        let left_tokens = if val.spans.is_empty() {
            0
        } else {
            val.epoch_tokens()
        };
        Self {
            stream: Stream::new(val, None),
            cursor: Cursor::default(),
            left_tokens,
            seq_len: seq_len.max(1),
            batch_size: batch_size.max(1),
            batches_left: max_batches,
            step: 0,
            cross_doc_attention,
        }
    }

    /// Number of (target) tokens the whole iteration will score.
    pub fn total_target_tokens(&self) -> u64 {
        let rows = self.left_tokens.saturating_sub(1) / self.seq_len as u64;
        let rows = rows.min((self.batches_left * self.batch_size) as u64);
        rows * self.seq_len as u64
    }
}

impl Iterator for ValBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.batches_left == 0 {
            return None;
        }
        let mut tokens = Vec::new();
        let mut doc_starts = Vec::new();
        let mut rows = 0;
        while rows < self.batch_size && self.left_tokens > self.seq_len as u64 {
            let row_start = tokens.len();
            let mut starts = Vec::new();
            self.stream.take(
                &mut self.cursor,
                self.seq_len,
                &mut tokens,
                row_start,
                &mut starts,
            );
            let mut peek = self.cursor;
            self.stream
                .take(&mut peek, 1, &mut tokens, row_start, &mut starts);
            self.left_tokens -= self.seq_len as u64;
            doc_starts.push(starts);
            rows += 1;
        }
        if rows == 0 {
            return None;
        }
        self.batches_left -= 1;
        let step = self.step;
        self.step += 1;
        Some(Batch {
            step,
            batch_size: rows,
            seq_len: self.seq_len,
            tokens,
            domain: vec![0; rows],
            doc_starts,
            cross_doc_attention: self.cross_doc_attention,
        })
    }
}
