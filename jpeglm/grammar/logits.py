"""The scan grammar as a ``transformers`` logits processor (for ``model.generate``)."""

from __future__ import annotations

import torch

from .scan_grammar import JpegScanGrammar


class JpegGrammarLogitsProcessor:
    """A ``transformers`` ``LogitsProcessor`` keeping one grammar per batch row.

    Each call feeds every token of ``input_ids`` the row's grammar has not seen yet (on
    the first call the prompt, later the last sampled token), then sets the scores of
    disallowed tokens to ``-inf``. Prompt tokens (the first ``prompt_len``; all tokens
    present at the first call if None) that are special (``vocab`` entry None) or EOS
    (left padding) are skipped. Rows that emitted EOS ignore further tokens (transformers
    pads finished rows itself) and allow only EOS.

    Args:
        grammar: template :class:`JpegScanGrammar`, copied per row in its current state.
        prompt_len: number of prompt tokens at the start of ``input_ids``.
    """

    def __init__(self, grammar: JpegScanGrammar, prompt_len: int | None = None):
        self.template = grammar.copy()
        self.prompt_len = prompt_len
        self.rows: list[JpegScanGrammar] | None = None
        self.seen: list[int] = []

    def __call__(self, input_ids: torch.LongTensor,
                 scores: torch.FloatTensor) -> torch.FloatTensor:
        """``scores`` [batch, n] with each row's disallowed tokens at -inf (``input_ids``
        [batch, length]: every token so far)."""
        n_rows = input_ids.shape[0]
        if self.rows is None:
            self.rows = [self.template.copy() for _ in range(n_rows)]
            self.seen = [0] * n_rows
            if self.prompt_len is None:
                self.prompt_len = input_ids.shape[1]
        ids = input_ids.tolist()
        masks = []
        for r in range(n_rows):
            grammar = self.rows[r]
            comp = grammar.compiled
            row = ids[r]
            for pos in range(self.seen[r], len(row)):
                tok = row[pos]
                if pos < self.prompt_len and (tok == comp.eos_id or not 0 <= tok < comp.vocab_size
                                              or comp.vocab[tok] is None):
                    continue
                if grammar.finished:
                    break
                grammar.advance(tok)
            self.seen[r] = len(row)
            masks.append(grammar.allowed_mask())
        mask = torch.stack(masks).to(scores.device)
        n_scores = scores.shape[-1]
        if mask.shape[-1] < n_scores:
            mask = torch.nn.functional.pad(mask, (0, n_scores - mask.shape[-1]), value=False)
        elif mask.shape[-1] > n_scores:
            mask = mask[:, :n_scores]
        return scores.masked_fill(~mask, float("-inf"))
