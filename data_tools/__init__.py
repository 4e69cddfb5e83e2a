"""Media folders -> canonical bytes -> tokens -> litdata shards; tokenizer training; synthetic
media.

The command line (``python -m data_tools VERB``)::

    python -m data_tools synth  OUT --kind image|video --profile NAME --count N --seed S
    python -m data_tools bpe    SRC -o TOKENIZER.json --profile NAME --vocab-size V [--limit N]
    python -m data_tools images SRC OUT --profile NAME --tokenizer TOKENIZER.json [--workers N]
                                [--crops N --seed S]
    python -m data_tools videos SRC OUT --profile NAME --tokenizer TOKENIZER.json [--workers N]
                                [--clips all|N] [--stride SECONDS]

Modules, one job each:

* :mod:`data_tools.sources`  finding media files (stable order, kinds), probing videos
* :mod:`data_tools.synth`    procedural PNG/MP4 training media (shapes, ffmpeg lavfi)
* :mod:`data_tools.bpe`      training a ``ByteTokenizer`` on a folder
* :mod:`data_tools.workers`  running encoders in processes, surviving bad inputs and crashes
* :mod:`data_tools.cache`    the per-input result log that makes a run resumable
* :mod:`data_tools.shards`   writing/reading litdata TokensLoader shard sets
* :mod:`data_tools.units`    work units (a file, a video clip, an image crop) and their plan
* :mod:`data_tools.crops`    seeded random crops of an image at the profile's size
* :mod:`data_tools.pipeline` the ``images`` / ``videos`` job (encode phase, build phase)

Codecs are reached through ``codeclm.profile.get_profile`` and
``codeclm.modality.modality_for(profile).encode_path``, plus ``avclm.clips`` for the clips
of a video after its first and ``jpeglm.codec.encode_image`` for crops.
"""
