"""Video training clips from a folder of photographs and videos: MAGVIT-v2's joint image-video training.

A real-content folder has few videos and many photographs, so the clips a video tokenizer trains on are
made three ways (config section `media_clips`):

- photographs as 1-frame videos (a whole batch of them, `image_share` of the batches, `image_batch_size`
  each): the causal tokenizer's first latent frame, which every clip starts with;
- photographs set in motion: a crop that pans, zooms and turns a little, at a random speed, rendered
  with one bilinear warp per frame from a copy shrunk (with antialiasing) so no frame is minified, so the
  tokenizer sees real textures moving;
- clips of the real videos at a random crop.

Every crop keeps the clip's aspect ratio and is placed at random, so photographs and videos of any
size and aspect ratio serve. Unreadable files are skipped with one line each. Validation is fixed: clips
spread evenly over the validation videos, and one moving clip per validation photograph, each drawn from
its own seeded generator.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videopoet.data.corpus import (
    VALIDATION_SEED,
    Span,
    frames_to_tensor,
    readable,
    report_skipped,
    skipped_summary,
    spread,
)
from videopoet.errors import UserError
from videopoet.media import probe, read_clip, read_image


@dataclass
class MediaClipsConfig:
    """Project config section `media_clips`: how video clips are made from a folder's photographs and
    videos (`videopoet tokenizer train video --data FOLDER`)."""

    image_share: float = 0.25  # share of training batches that are photographs as 1-frame videos
    image_batch_size: int = 0  # photographs in such a batch; 0: the training batch size. A photograph costs
    # about 1/10 of a 17-frame clip, so a larger batch buys many more images for a little time
    photo_clip_share: float = (
        0.75  # share of the other clips made from moving photographs (rest: real videos)
    )
    min_crop: float = 0.5  # a crop spans [min_crop, 1] of the largest box of the clip's aspect that fits
    max_zoom: float = 1.5  # a moving photograph zooms in or out by at most this factor over a clip
    max_rotation: float = 5.0  # degrees a moving photograph turns over a clip, at most
    max_pan: float = 0.5  # distance a moving photograph pans over a clip, at most, as a share of the crop
    cache_side: int = 0  # photographs are held in memory with the short side at most this; 0: 3x the clip's
    colour_jitter: float = 0.0  # share of training items with their hue turned by a random angle and their
    # saturation raised, so the tokenizer sees colours the corpus lacks (a magenta flower from a red one); 0: off
    max_saturation: float = 1.5  # a jittered item's saturation is scaled by a factor drawn from [1, this]
    white_balance: float = 0.0  # share of training items whose R, G and B are each scaled by a gain drawn
    # from [1 - max_gain_shift, 1 + max_gain_shift] (a camera's white balance), so near-white areas come in
    # tints as well as the neutral white of studio backgrounds; 0: off
    max_gain_shift: float = 0.1
    exposure: float = 0.0  # share of training items brightened by one gain drawn from [1, max_exposure] and
    # clipped, as an over-exposed camera: bright skies and walls turn into tinted near-white areas; 0: off
    max_exposure: float = 1.5

    def __post_init__(self) -> None:
        for name in ("image_share", "photo_clip_share", "colour_jitter", "white_balance", "exposure"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_saturation < 1 or self.max_exposure < 1:
            raise ValueError(
                f"max_saturation and max_exposure must be >= 1, got {self.max_saturation} and {self.max_exposure}"
            )
        if not 0 <= self.max_gain_shift < 1:
            raise ValueError(f"max_gain_shift must be in [0, 1), got {self.max_gain_shift}")
        if not 0 < self.min_crop <= 1:
            raise ValueError(f"min_crop must be in (0, 1], got {self.min_crop}")
        if self.max_zoom < 1 or self.max_rotation < 0 or self.max_pan < 0 or self.cache_side < 0:
            raise ValueError("max_zoom must be >= 1; max_rotation, max_pan and cache_side >= 0")
        if self.image_batch_size < 0:
            raise ValueError(f"image_batch_size must be >= 0, got {self.image_batch_size}")


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> float `[T, 3, H, W]` in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float `[T, 3, H, W]` in [0, 255] -> uint8 `[T, H, W, 3]`."""
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _shrink(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` `[T, 3, H, W]` scaled by `scale` <= 1 with antialiasing (unchanged when scale >= 1)."""
    if scale >= 1:
        return x
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def colour_matrix(angle: float, saturation: float) -> np.ndarray:
    """The 3x3 RGB map that turns hue by `angle` radians about the grey axis and scales the distance from
    it (saturation) by `saturation`; greys and each pixel's channel mean stay as they were."""
    k = np.full(3, 1 / math.sqrt(3))
    grey = np.outer(k, k)  # projection onto the grey axis
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    turn = math.cos(angle) * np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * grey  # Rodrigues
    return grey + saturation * (turn - grey)


def jitter_colour(frames: np.ndarray, rng: np.random.Generator, cfg: MediaClipsConfig) -> np.ndarray:
    """uint8 `[..., 3]` frames recoloured for training: for a `cfg.colour_jitter` share of calls by
    `colour_matrix` at a random angle and a saturation factor in [1, max_saturation], then for a
    `cfg.white_balance` share by a random gain per channel in [1 - max_gain_shift, 1 + max_gain_shift],
    then for a `cfg.exposure` share by one gain in [1, max_exposure], clipped to [0, 255]. A share of 0 draws
    nothing, so runs without it draw what they always drew."""
    m = None
    if cfg.colour_jitter > 0 and rng.random() < cfg.colour_jitter:
        m = colour_matrix(rng.uniform(0, 2 * math.pi), rng.uniform(1, cfg.max_saturation))
    if cfg.white_balance > 0 and rng.random() < cfg.white_balance:
        gains = np.diag(rng.uniform(1 - cfg.max_gain_shift, 1 + cfg.max_gain_shift, 3))
        m = gains if m is None else gains @ m
    if cfg.exposure > 0 and rng.random() < cfg.exposure:
        gain = rng.uniform(1, cfg.max_exposure)
        m = gain * np.eye(3) if m is None else gain * m
    if m is None:
        return frames
    return np.clip(frames.astype(np.float32) @ m.T.astype(np.float32), 0, 255).round().astype(np.uint8)


def random_crop(
    frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator, min_crop: float
) -> np.ndarray:
    """A crop of uint8 `[T, H, W, 3]` frames with the aspect of `size` = (h, w), spanning [min_crop, 1] of
    the largest such box, at a random place, resized to `size` with antialiasing."""
    h, w = size
    H, W = frames.shape[1:3]
    full = min(H, W * h / w)  # the largest box height that keeps the aspect
    ch = full * rng.uniform(min_crop, 1.0)
    cw = ch * w / h
    top, left = rng.uniform(0, H - ch), rng.uniform(0, W - cw)
    t0, l0 = int(math.floor(top)), int(math.floor(left))
    t1, l1 = min(H, max(t0 + 1, round(top + ch))), min(W, max(l0 + 1, round(left + cw)))
    x = _to_tensor(frames[:, t0:t1, l0:l1])
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=(t1 - t0) > h)
    return _to_uint8(x)


def moving_photo(
    photo: np.ndarray, frames: int, size: tuple[int, int], rng: np.random.Generator, cfg: MediaClipsConfig
) -> np.ndarray:
    """A `frames`-frame clip of uint8 `[1, H, W, 3]` `photo` seen by a camera that pans, zooms and turns
    (each drawn at random, up to the config's limits, traversed at a random speed): uint8 `[T, h, w, 3]`."""
    h, w = size
    H, W = photo.shape[1:3]
    speed = rng.uniform(0.0, 1.0)  # share of the drawn motion the clip covers
    zoom = math.exp(rng.uniform(-1, 1) * math.log(cfg.max_zoom) * speed)
    turn = math.radians(rng.uniform(-1, 1) * cfg.max_rotation * speed)
    s = np.linspace(0.0, 1.0, frames)
    scales, angles = zoom**s, turn * s  # crop size relative to the first frame's, and angle, per frame
    # The box must fit inside the photo at every frame: size the first crop for the largest extent.
    grow = float(scales.max())
    c, si = abs(math.cos(turn)) if frames > 1 else 1.0, abs(math.sin(turn)) if frames > 1 else 0.0
    fit = min(H / (grow * (si * w / h + c)), W / (grow * (c * w / h + si)))  # largest first-crop height
    ch = fit * rng.uniform(cfg.min_crop, 1.0)
    half_w, half_h = grow * (c * ch * w / h + si * ch) / 2, grow * (si * ch * w / h + c * ch) / 2
    lo, hi = np.array([half_w, half_h]), np.array([W - half_w, H - half_h])
    pan = cfg.max_pan * ch * speed * rng.uniform(0, 1)
    start = rng.uniform(lo, np.maximum(lo, hi))
    direction = rng.uniform(0, 2 * math.pi)
    end = np.clip(start + pan * np.array([math.cos(direction), math.sin(direction)]), lo, np.maximum(lo, hi))
    centers = start[None] + (end - start)[None] * s[:, None]
    # Shrink the photo so the smallest crop maps at most 1:1 onto the output (no minification aliasing).
    shrink = min(1.0, h / (ch * float(scales.min())))
    img = _shrink(_to_tensor(photo), shrink)
    Hs, Ws = img.shape[-2:]
    theta = torch.zeros(frames, 2, 3)
    for i in range(frames):
        half_x, half_y = scales[i] * ch * w / h / 2, scales[i] * ch / 2
        cos, sin = math.cos(angles[i]), math.sin(angles[i])
        # output (u, v) in [-1, 1] -> photo pixel center + R @ (u * half_x, v * half_y) -> normalized [-1, 1]
        theta[i, 0] = torch.tensor([cos * half_x, -sin * half_y, centers[i, 0] - W / 2]) / (W / 2)
        theta[i, 1] = torch.tensor([sin * half_x, cos * half_y, centers[i, 1] - H / 2]) / (H / 2)
    grid = F.affine_grid(theta, [frames, 3, h, w], align_corners=False)
    out = F.grid_sample(
        img.expand(frames, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return _to_uint8(out)


def video_spans(files: list[Path], frames: int, fps: float, skipped: list[str]) -> list[Span]:
    """Spans of the video `files` for `frames`-frame clips at `fps`; a file shorter than that is read
    faster, up to its own frame rate (real motion, sped up), and skipped (a line in `skipped`) only when
    even that does not fill a clip."""
    spans = []
    for path, info in readable(files, probe, skipped):
        if not info.video:
            skipped.append(f"{path.name}: no video stream")
            continue
        duration = info.video[0].duration_s or info.duration_s or 0.0
        native = info.video[0].fps or fps
        rate = max(fps, frames / duration) if duration > 0 else math.inf
        if rate > max(fps, native) + 1e-6:
            skipped.append(f"{path.name}: {duration:g} s holds fewer than {frames} frames")
            continue
        spans.append(Span(str(path), 0.0, max(0.0, duration - frames / rate), rate))
    return spans


class MediaFolderClips:
    """Video clips from photographs and videos (see the module docstring): `sample` gives training
    batches `[B, 3, T, H, W]` (or `[B, 3, 1, H, W]` for photograph batches), `validation` fixed clips."""

    def __init__(
        self,
        videos: tuple[list[Path], list[Path]],
        photos: tuple[list[Path], list[Path]],
        frames: int,
        size: tuple[int, int],
        fps: float,
        config: MediaClipsConfig | None = None,
    ) -> None:
        self.cfg = config or MediaClipsConfig()
        self.frames, self.size = frames, (int(size[0]), int(size[1]))
        skipped: list[str] = []
        self.train_videos = video_spans(videos[0], frames, fps, skipped)
        self.val_videos = (
            self.train_videos if videos[1] == videos[0] else video_spans(videos[1], frames, fps, skipped)
        )
        side = self.cfg.cache_side or 3 * max(self.size)
        self.train_photos = self._load(photos[0], side, skipped)
        self.val_photos = (
            self.train_photos if photos[1] == photos[0] else self._load(photos[1], side, skipped)
        )
        report_skipped(skipped)
        if not self.train_photos and not self.train_videos:
            raise UserError(
                f"no usable video files or photographs to make {frames}-frame clips from{skipped_summary(skipped)}"
            )

    @staticmethod
    def _load(paths: list[Path], side: int, skipped: list[str]) -> list[tuple[str, np.ndarray]]:
        out = []
        for path, img in readable(paths, read_image, skipped):
            scale = side / min(img.shape[1:3])
            out.append((path.name, _to_uint8(_shrink(_to_tensor(img), scale)) if scale < 1 else img))
        return out

    def _video_clip(self, span: Span, start: float, rng: np.random.Generator) -> np.ndarray:
        frames = read_clip(span.path, start, self.frames, span.fps, pad=True)
        return random_crop(frames, self.size, rng, self.cfg.min_crop)

    def _photo_clip(self, photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return moving_photo(photo, self.frames, self.size, rng, self.cfg)

    def _one_clip(self, rng: np.random.Generator) -> np.ndarray:
        use_photo = bool(self.train_photos) and (
            not self.train_videos or rng.random() < self.cfg.photo_clip_share
        )
        if use_photo:
            return self._photo_clip(self.train_photos[int(rng.integers(len(self.train_photos)))][1], rng)
        span = self.train_videos[int(rng.integers(len(self.train_videos)))]
        return self._video_clip(span, float(rng.uniform(span.start_s, span.last_start_s)), rng)

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        if self.train_photos and rng.random() < self.cfg.image_share:
            picks = rng.integers(len(self.train_photos), size=self.cfg.image_batch_size or batch_size)
            items = [random_crop(self.train_photos[i][1], self.size, rng, self.cfg.min_crop) for i in picks]
        else:
            items = [self._one_clip(rng) for _ in range(batch_size)]
        return frames_to_tensor([jitter_colour(x, rng, self.cfg) for x in items])

    def mixture(self) -> list[tuple[str, float, MediaFolderClips]]:
        """The kinds of batch `sample` mixes, each with its share of the batches and a copy of this source
        that draws only that kind: a photograph batch and a clip batch cost very different times, so
        step timing (`fit_steps_to_minutes`) times each kind on its own rather than a random few of both, and
        the ranks of a data-parallel run draw the same kind at each step (`SolverBase.sample_batch`)."""
        share = self.cfg.image_share if self.train_photos else 0.0
        if share in (0.0, 1.0):
            return [("photographs" if share else "clips", 1.0, self)]
        return [("photographs", share, self._only(1.0)), ("clips", 1.0 - share, self._only(0.0))]

    def _only(self, image_share: float) -> MediaFolderClips:
        other = copy.copy(self)  # shares the loaded photographs and video spans
        other.cfg = replace(self.cfg, image_share=image_share)
        return other

    def validation_items(self, n: int | None = None) -> list[tuple[str, np.ndarray]]:
        """Fixed (name, uint8 `[T, H, W, 3]`) validation clips: every validation video's clips (as many
        as fit end to end, at least one) and one moving clip per validation photograph, interleaved so
        the first `n` mix both kinds."""
        videos: list[tuple[str, tuple]] = []
        for span in self.val_videos:
            fits = max(1, int((span.last_start_s - span.start_s) * span.fps // self.frames) + 1)
            videos += [
                (f"{Path(span.path).stem}@{start:.2f}s", (span, start))
                for span, start in spread([span], fits)
            ]
        photos = [(Path(name).stem, i) for i, (name, _) in enumerate(self.val_photos)]
        order = sorted(
            [(k / max(1, len(videos)), 0, k) for k in range(len(videos))]
            + [(k / max(1, len(photos)), 1, k) for k in range(len(photos))]
        )
        out = []
        for _, kind, k in order[: n if n is not None else len(order)]:
            if kind == 0:
                name, (span, start) = videos[k]
                out.append((name, self._video_clip(span, start, np.random.default_rng([VALIDATION_SEED, k]))))
            else:
                name, i = photos[k]
                rng = np.random.default_rng([VALIDATION_SEED, 1, i])
                out.append((name, self._photo_clip(self.val_photos[i][1], rng)))
        return out

    def validation(self, n: int) -> torch.Tensor:
        return frames_to_tensor([clip for _, clip in self.validation_items(n)])
