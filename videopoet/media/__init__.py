"""Media I/O with PyAV: probe files, read clips, stills and sound, write MP4, PNG, WAV and FLAC.

Conventions (docs/design.md, "Media conventions"): a video clip is uint8 RGB ``[T, H, W, 3]``, a still
image a 1-frame clip, sound a float32 mono waveform ``[N]`` in [-1, 1]. `videopoet.media.codecs` holds the
H.264 and Opus references the tokenizers are measured against.
"""

from videopoet.media.audio import read_audio, write_audio
from videopoet.media.container import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    AudioStreamInfo,
    MediaError,
    MediaInfo,
    NoAudioStreamError,
    NotEnoughFramesError,
    NoVideoStreamError,
    VideoStreamInfo,
    probe,
)
from videopoet.media.video import read_clip, read_image, resize_center_crop, write_image, write_video

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "AudioStreamInfo",
    "MediaError",
    "MediaInfo",
    "NoAudioStreamError",
    "NoVideoStreamError",
    "NotEnoughFramesError",
    "VideoStreamInfo",
    "probe",
    "read_audio",
    "read_clip",
    "read_image",
    "resize_center_crop",
    "write_audio",
    "write_image",
    "write_video",
]
