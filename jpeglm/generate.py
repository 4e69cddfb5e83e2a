"""Image generation and completion: a generator of events, one MCU at a time.

``generate_images(model, count)`` samples JPEG-LM streams (unconditionally, from the
profile's constant header) and ``generate_images(model, prompts=[...])`` completes
given prefixes (``jpeglm.codec.prompt_prefix``: header + the first MCUs). Both yield

- :class:`McuEvent` for every MCU the moment its restart marker (or EOI) is written;
- :class:`ImageEvent` per finished image: the modeled bytes (repaired if damaged, see
  :func:`repair`), the decoded image, how many MCUs were intact;
- one :class:`DoneEvent` with the statistics.

By default every row is constrained by the scan grammar (:mod:`jpeglm.grammar`), so
each image is a complete, valid baseline JPEG; ``grammar=False`` samples freely as the
paper does (generation stops after the profile's MCU count, at EOS or at
``max_tokens``) and damaged streams are repaired: intact leading MCUs kept, the rest
mid-grey. Rows of one batch share a KV cache; sample ``i`` uses seed ``seed + i``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterator, Sequence

from PIL import Image

from codeclm.errors import ConfigError, DecodeError
from codeclm.generation.loading import load_model
from codeclm.generation.sampling_config import SamplingConfig, draw_seed
from codeclm.generation.session import ACCEPT, Session, Stop, Verdict
from codeclm.generation.stats import DecodeStats, DoneEvent
from codeclm.guidance import conditioned_forward
from codeclm.labels import with_class
from codeclm.streaming import Unit

from . import codec


@dataclasses.dataclass(frozen=True)
class McuEvent:
    """MCU ``index`` (0-based in raster order, prompt MCUs included) of sample ``sample``
    (batch row ``row``): its bytes, closing marker included."""

    data: bytes
    index: int
    sample: int
    row: int = 0


@dataclasses.dataclass(frozen=True)
class ImageEvent:
    """A finished sample: ``data`` the modeled bytes (complete stream; repaired if it was
    damaged), ``image`` (RGB, profile size), ``n_intact`` MCUs generated validly (prompt
    included), ``valid``: the stream was complete and valid as sampled."""

    sample: int
    data: bytes
    image: Image.Image
    n_intact: int
    valid: bool
    row: int = 0


Event = McuEvent | ImageEvent | DoneEvent


def repair(data: bytes, profile) -> tuple[bytes, int]:
    """Possibly damaged or cut modeled bytes -> ``(complete valid modeled stream,
    n_intact)``: the leading intact MCUs are kept byte for byte, every later MCU is a
    mid-grey one (``codec.blank_unit``), markers and EOI as the profile writes them."""
    n = codec.intact_units(data, profile)
    if n == profile.mcu_count and is_valid(data, profile):
        return bytes(data), n
    _, units, _ = codec.split_mcus(data) if n else (codec.header(profile), [], b"")
    bodies = [u[:-2] if len(u) >= 2 and u[-2] == 0xFF and 0xD0 <= u[-1] <= 0xD7 else u
              for u in units[:n]]
    bodies += [codec.blank_unit(profile)] * (profile.mcu_count - n)
    scan = b"".join(b + bytes((0xFF, 0xD0 + i % 8)) for i, b in enumerate(bodies[:-1]))
    return codec.header(profile) + scan + bodies[-1] + codec.EOI, n


def is_valid(data: bytes, profile) -> bool:
    """Whether ``data`` is a complete, valid modeled stream of ``profile``."""
    try:
        codec.check(data, profile)
    except DecodeError:
        return False
    return True


def preview(data: bytes, profile) -> Image.Image:
    """The image as far as it is generated: intact MCUs, mid-grey elsewhere."""
    return codec.decode_tolerant(data, profile)[0]


def generate_images(model, count: int | None = None, *, prompts: Sequence[bytes] | None = None,
                    batch: int = 1, config: SamplingConfig | None = None,
                    device: str | None = None, dtype=None, grammar: bool = True,
                    max_tokens: int | None = None, max_mcu_tokens: int | None = None,
                    class_name: str | None = None, cfg_scale: float | None = None,
                    finish_early: bool = True) -> Iterator[Event]:
    """Generate ``count`` images, or one completion per prompt in ``prompts`` (modeled
    bytes: the profile's header plus whole MCUs, as ``codec.prompt_prefix`` makes).

    ``batch`` rows are sampled together; sample ``i`` uses seed ``config.seed + i``.
    ``max_tokens``: new tokens per image at most (default: what the context leaves).
    ``max_mcu_tokens`` (without grammar): an MCU still open after this many tokens ends
    the image there (the rest is repaired). ``class_name``: a class-conditional model's
    class (every prompt gets its token after ``<s>``), ``cfg_scale``: classifier-free
    guidance scale (:func:`codeclm.guidance.conditioned_forward`). ``finish_early``: where
    the model's draw would end an MCU before its blocks are coded, finish it plainly and
    write the model's marker after it (default;
    :meth:`~jpeglm.grammar.JpegScanGrammar.finish_early`, filters-first draws
    only) or, False, draw the model's next allowed token. Stats: ``images``, ``valid``,
    ``tokens_sampled``, ``tokens_per_s``, ``seed``, ``wall_s``.
    """
    if (count is None) == (prompts is None):
        raise ConfigError("give either a count or prompts")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    t0 = time.perf_counter()
    config = config or SamplingConfig()
    lm = load_model(model, "jpeg", device, dtype)
    profile = lm.profile
    header = codec.header(profile)
    if prompts is None:
        if count < 1:
            raise ConfigError(f"-n must be >= 1, got {count}")
        prompts = [header] * count
    prompts = [bytes(p) for p in prompts]
    for p in prompts:
        if not p.startswith(header):
            raise ConfigError("a prompt must start with the profile's header "
                              "(use codec.prompt_prefix)")
    seed = config.seed if config.seed is not None else draw_seed()
    kv, class_id = conditioned_forward(lm.weights, lm.tokenizer, min(batch, len(prompts)),
                                       class_name, cfg_scale)
    totals = DecodeStats(seed=seed)
    n_valid = 0
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        for ev in _chunk(kv, lm, chunk, start, dataclasses.replace(config, seed=seed + start),
                         grammar, max_tokens, max_mcu_tokens, totals, class_id,
                         finish_early):
            n_valid += int(isinstance(ev, ImageEvent) and ev.valid)
            yield ev
    stats = dict(totals.as_dict(), images=len(prompts), valid=n_valid,
                 wall_s=time.perf_counter() - t0)
    yield DoneEvent(stats)


def _chunk(kv, lm, chunk: list[bytes], first: int, config: SamplingConfig,
           grammar: bool, max_tokens: int | None, max_mcu_tokens: int | None,
           totals: DecodeStats, class_id: int | None = None,
           finish_early: bool = True) -> Iterator[Event]:
    profile, tok = lm.profile, lm.tokenizer
    n_mcus = profile.mcu_count
    done_mcus = [len(codec.split_mcus(p)[1]) for p in chunk]
    for i, k in enumerate(done_mcus):
        if k >= n_mcus:
            raise ConfigError(f"prompt {first + i} already holds all {n_mcus} MCUs")

    def judge(r: int, unit: Unit) -> Verdict:
        index = done_mcus[r] + unit.index
        if index >= n_mcus:
            return Stop(keep=False)
        if unit.truncated:  # cut by max_mcu_tokens (or by max_tokens): the image ends here
            return Stop(keep=False)
        return Stop(keep=True) if index == n_mcus - 1 and not grammar else ACCEPT

    constraints = None
    if grammar:
        from .grammar import JpegScanGrammar

        constraints = []
        base = JpegScanGrammar.from_profile(profile, tok.token_bytes, tok.eos_id)
        base.finishes_early = finish_early
        base.encode = functools.partial(tok.encode, bos=False, eos=False)
        for p in chunk:
            g = base.copy()
            g.feed_bytes(p)
            constraints.append(g)
    ids = [with_class(tok.encode(p, bos=True, eos=False), class_id) for p in chunk]
    room = kv.max_length - max(len(x) for x in ids) - 1
    if room < 1:
        raise ConfigError(f"a prompt of {max(len(x) for x in ids)} tokens fills the "
                          f"{kv.max_length}-token context")
    session = Session(kv, tok, len(chunk), config, modality="jpeg",
                      max_new_tokens=min(max_tokens or room, room),
                      max_unit_tokens=None if grammar else max_mcu_tokens, on_unit=judge)
    session.start(ids, constraints)
    while session.active:
        events = session.step()
        for r, unit in events.units:
            yield McuEvent(unit.data, done_mcus[r] + unit.index, first + r, r)
    for r, p in enumerate(chunk):
        data = p + b"".join(session.rows[r].units)
        valid = is_valid(data, profile)
        fixed, n_intact = (data, n_mcus) if valid else repair(data, profile)
        image = codec.decode(fixed, profile)
        yield ImageEvent(first + r, fixed, image, n_intact, valid, r)
    totals.add(session.stats)


def grid(images: Sequence[Image.Image], columns: int | None = None, pad: int = 2) -> Image.Image:
    """Images (same size) in a grid, ``columns`` wide (default: about square), white gaps."""
    if not images:
        raise ConfigError("no images for a grid")
    w, h = images[0].size
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    out = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out.paste(im.convert("RGB"), (pad + c * (w + pad), pad + r * (h + pad)))
    return out
