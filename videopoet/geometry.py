"""One clip geometry for a whole project: how many frames, at what rate and size, with sound at what rate.

The project config's `clip` section is the one place these are set. `config.py` hands each value to the
keys of the other sections that need it (`CLIP_KEYS`: the shapes dataset, ingest, the video and audio
tokenizers); setting one of those keys as well, to another value, is an error that names both. The
geometry a model was trained on travels with it: token records write it to `clip.json`, `videopoet
export` copies it into the model folder, and `videopoet generate` reads it from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ClipConfig:
    """Project config section `clip`: the clips every part of the project reads, writes and tokenizes."""

    frames: int = 17  # frames per clip: 1 + k * the video tokenizer's temporal factor
    fps: float = 8.0  # frames per second (17 at 8 fps = 2.125 s, VideoPoet's clip)
    height: int = 128  # pixels; multiples of the video tokenizer's spatial factor
    width: int = 128
    sample_rate: int = 16000  # of the clip's sound, as the audio tokenizer takes it

    def __post_init__(self) -> None:
        if self.frames < 1 or not self.fps > 0 or min(self.height, self.width) < 1 or self.sample_rate < 1:
            raise ValueError("clip frames, fps, height, width and sample_rate must be positive")

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def section_values(self) -> dict[str, Any]:
        """The value each dependent key (`CLIP_KEYS`) gets: dotted key -> value."""
        values: dict[str, Any] = {}
        for field, keys in CLIP_KEYS.items():
            for key in keys:
                values[key] = self.derived(field)
        return values

    def derived(self, field: str) -> Any:
        if field == "size":
            return [self.height, self.width]
        if field == "square":
            if self.height != self.width:
                raise ValueError(f"the shapes dataset draws square clips; clip is {self.height}x{self.width}")
            return self.height
        return asdict(self)[field]


# Where each clip value lands: the dotted keys of other sections it sets. `size` is [height, width];
# `square` the side of a square clip (the shapes are drawn square).
CLIP_KEYS: dict[str, tuple[str, ...]] = {
    "frames": ("shapes.frames", "ingest.frames", "video_tokenizer.model.frames"),
    "fps": ("shapes.fps", "ingest.fps", "video_tokenizer.fps"),
    "height": ("video_tokenizer.model.height",),
    "width": ("video_tokenizer.model.width",),
    "size": ("ingest.size",),
    "square": ("shapes.size",),
    "sample_rate": ("shapes.sample_rate", "audio_tokenizer.model.sample_rate"),
}
