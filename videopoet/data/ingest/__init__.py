"""Media folder or Hugging Face dataset -> clip index (a `datasets` dataset on disk).

``ingest(src, out, config)`` probes every media file of ``src`` with PyAV and cuts it into clips of
``config.frames`` frames at ``config.fps``; it never decodes whole files. Output folder ``out``:

- ``clips/``: the clip index (``datasets.load_from_disk``), one row per clip: ``clip_id`` (``KEY#START``,
  e.g. ``video/a.mp4#2.125``, stable across runs), ``source`` (absolute path), ``start_s``, ``fps``,
  ``num_frames``, ``width``, ``height`` (of the output clip: ``config.size`` or the source size),
  ``has_audio``, ``caption`` (str or None) and ``split`` (str or None, copied from a caption mapping or
  dataset column named ``split``; the shapes dataset uses it to keep its held-out combinations apart);
- ``files/``: one row per source file seen (key, size, mtime, caption, outcome), so a re-run only
  processes files that are new or changed (size, mtime or caption), drops rows of files that are gone,
  and keeps the rest;
- ``report.json``: files seen, ingested and skipped (ingested + skipped == seen, always), clips, each
  skipped file with a reason code and FFmpeg's message, and the settings (a re-run with other clip
  settings is refused: the old rows would not match).

Sources (``src``):

- a folder, searched recursively for ``VIDEO_EXTENSIONS`` and ``AUDIO_EXTENSIONS`` (case-insensitive;
  audio-only files are listed so that the report says why they were skipped, rather than silently
  ignored; still images are not ingested). Keys are paths relative to the folder;
- a dataset saved with ``save_to_disk`` (a ``Dataset`` or ``DatasetDict``; a split's name fills ``split``)
  or a ``.csv``, ``.json``, ``.jsonl`` or ``.parquet`` file read with ``datasets.load_dataset``, with a
  column of media paths (``media_column``, else the first of ``MEDIA_COLUMNS``; a ``Video``/``Image``
  feature is read as its path) and optionally captions (``caption_column``, else the first of
  ``CAPTION_COLUMNS``). Relative paths are resolved against the data file's folder (a saved dataset's
  parent folder), else the working directory. Keys are the paths as written. Media embedded in the
  dataset as bytes (``save_to_disk`` of a ``Video`` feature embeds its files) are written once to
  ``out/media/`` (named by a hash of their content; key ``embedded/HASH/NAME``);
- a single media file.

Captions, the first found of: the ``captions`` mapping file, the dataset's caption column, a sidecar
``NAME.txt`` beside the media file, and for folders a ``captions.jsonl``, ``captions.csv``,
``metadata.jsonl`` or ``metadata.csv`` at the folder's root (the Hugging Face folder convention). A
mapping file (JSONL, CSV, or a JSON object key -> caption) is keyed by relative path or file name
(column ``file_name``, ``file``, ``path``, ``video`` or ``name``; caption column as above). Files without
a caption are kept: tasks that need no text can use them.

Clips start at 0, ``stride_s`` apart (default: back to back, ``frames / fps``), and must lie wholly in the
video: a file shorter than one clip (or than ``min_seconds``) is skipped as ``too_short``. The source
frame rate is not needed: clips are read by presentation time (`videopoet.media.read_clip`), so a container that
reports none (Theora in Ogg) is cut by its duration, or by its packets' timestamps when it has no
duration either. Each file's first clip's first frame and last clip's last frame are decoded; when the
last fails (a truncated file whose header promises more), the end is measured from the packets that are
there and the clips recut. A clip ``has_audio`` when the file has an audio stream that covers the clip
(within 0.1 s; the tokenizer pads the rest with silence).

One bad file never stops the run: every failure is recorded as a skip (reason codes: ``missing``,
``empty``, ``unreadable``, ``no_video_stream``, ``no_frame_size``, ``no_duration``, ``too_short``,
``undecodable``, ``bad_name`` (not UTF-8), ``error`` (an unexpected exception; its message says which)).
A decoder that crashes its process (a segfault in FFmpeg) is not caught: run with ``num_proc=1`` to find
the file, then move it away.
"""

from videopoet.data.ingest.config import (
    AUDIO_EXTENSIONS,
    CAPTION_COLUMNS,
    CLIPS,
    MEDIA_COLUMNS,
    VIDEO_EXTENSIONS,
    IngestConfig,
)
from videopoet.data.ingest.cut import clip_starts
from videopoet.data.ingest.index import ingest, load_clip_index

__all__ = [
    "AUDIO_EXTENSIONS",
    "CAPTION_COLUMNS",
    "CLIPS",
    "IngestConfig",
    "MEDIA_COLUMNS",
    "VIDEO_EXTENSIONS",
    "clip_starts",
    "ingest",
    "load_clip_index",
]
