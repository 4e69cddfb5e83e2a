"""Valid-by-construction JPEG sampling: an incremental scan grammar that masks BPE tokens.

:class:`JpegScanGrammar` follows a JPEG-LM stream one token at a time and says which
tokens may come next (``allowed_mask()``), so that *every* sampled stream is a complete
baseline JPEG of the profile's size, shaped like the canonical encoder's output:

* the constant header (SOI, APP0, SOF0, DRI, SOS) byte for byte;
* per MCU, every 8x8 block in scan order (4:2:0: Y Y Y Y Cb Cr): a DC category code
  of the standard (T.81 Annex K.3) tables plus its extra bits, then AC run/size codes
  plus extra bits; at most 63 AC coefficients; EOB only while fewer than 63 are
  used; ZRL only when a non-zero coefficient still fits after it, and never directly
  before EOB (libjpeg never writes either);
* every decoded DC coefficient within what an 8-bit baseline encoder can produce,
  ``|DC| <= ceil(1024 / q_dc)`` (q_dc from the profile's quantization tables; 32 for
  luma and 31 for chroma at quality 25). The luma DC predictor chains through the
  MCU's Y blocks and is reset by every restart marker. libjpeg accepts other values
  without a word (slightly too large ones saturate pixels, far too large ones wrap
  around in its range limiting), so this is a plausibility rule, not a syntax rule;
* byte stuffing (``FF`` inside entropy-coded data is followed by ``00``), one-bits
  padding each MCU to a byte boundary, ``RST(i mod 8)`` after MCU ``i``, EOI after
  the last MCU, then only EOS.

A token is allowed iff *all* its bytes continue a valid stream. Dead ends are pruned
bit by bit (a Huffman prefix is allowed only if some code below it still fits), so
every reachable state can be completed: with all 256 single bytes in the vocabulary
masked sampling can never get stuck.

How it is fast
--------------
The bit-level automaton (:class:`ScanAutomaton`) has a few thousand *k-free* states
(block, phase, position in the current Huffman code or extra bits, ZRL flag); the
coefficient index ``k``, the luma DC predictor and the MCU index travel beside it.
Each (state, bit) transition is a row of small integer tables: next state, the
largest ``k`` it allows, how it changes ``k``, which predictor values it allows and how
it changes the predictor. Running all (state, byte) pairs through them as numpy lanes
with ``k`` kept symbolic gives *byte tables* (valid iff ``k0 <= threshold``, then
``k = k0 * mul + add``, plus the one ``k0`` at which the byte ends the block at
coefficient 63); continuing the lanes along the vocabulary's byte trie gives the same
for whole tokens: *token tables*, row ``state * vocab_size + token`` (about a second, once per
vocabulary; the automaton is shared by vocabularies).

At a token boundary the grammar state is ``(core, pred, mcu)`` with ``core = (state,
k, ff)`` (``ff``: a stuffed zero byte is due). The mask of a core is one vectorized
read of its token-table row block (``threshold >= k``); tokens whose validity depends
on the predictor carry an interned bitset of allowed predictors and get a per-predictor
row on demand. The entry is valid for the whole k interval between neighbouring
thresholds, so one entry serves many ``k``. Cores at markers, the header or a pending
stuffed zero walk the vocabulary trie instead. Entries are cached in a
:class:`CompiledScanGrammar` shared by every grammar with the same layout and
vocabulary (batch rows, successive generations): a cached ``allowed_mask()`` is a dict
lookup, ``advance()`` a few table reads.

Modules, bottom up
------------------
* :mod:`.header`: the modeled header and the :class:`ScanLayout` it implies;
* :mod:`.automaton`: :class:`ScanAutomaton`, the vocabulary-free bit and byte tables;
* :mod:`.vocab_trie`, :mod:`.token_tables`: the vocabulary as a byte trie and the byte
  tables extended along it;
* :mod:`.entries`, :mod:`.compiled`: mask entries per core and their caches
  (:class:`CompiledScanGrammar`);
* :mod:`.scan_grammar`: :class:`JpegScanGrammar`, the per-stream API;
* :mod:`.logits`: :class:`JpegGrammarLogitsProcessor` for ``transformers``.
"""

from .automaton import ScanAutomaton, scan_automaton
from .compiled import CompiledScanGrammar, compile_grammar
from .header import ScanLayout, parse_layout, pillow_streams
from .logits import JpegGrammarLogitsProcessor
from .scan_grammar import GrammarError, JpegScanGrammar

__all__ = [
    "CompiledScanGrammar", "GrammarError", "JpegGrammarLogitsProcessor", "JpegScanGrammar",
    "ScanAutomaton", "ScanLayout", "compile_grammar", "parse_layout", "pillow_streams",
    "scan_automaton",
]
