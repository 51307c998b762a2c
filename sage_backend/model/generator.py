"""The SAGE generator: mapping -> feature field -> volume renderer -> semantic decoder -> drawing decoder
(-> domain translator conditioned on the detached semantics)."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from sage_backend.cameras import camera_rays, image_coords_to_grid, project_points
from sage_backend.config import ModelConfig
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.decoders import UpsamplingDecoder
from sage_backend.model.field import FeatureField, Field
from sage_backend.model.mapping import MappingNetwork, LatentCode
from sage_backend.model.part_tones import PartTones, measure, paint, recolour_skin, skin_colour
from sage_backend.model.renderer import RenderedView, VolumeRenderer
from sage_backend.model.surface import surface_uv_map
from sage_backend.model.translator import DomainTranslator


@dataclass
class StereoView:
    """MVCGAN's auxiliary view, warped into the primary view through the primary depth."""

    rgb: torch.Tensor  # (B, 3, h, w) the auxiliary low-res RGB seen from the primary camera
    valid: torch.Tensor  # (B, 1, h, w) 1 where the warp landed inside the auxiliary image


@dataclass
class GeneratorOutput:
    drawing: torch.Tensor  # (B, 3, H, W), nominally [-1, 1]
    semantic_logits: torch.Tensor  # (B, 19, H, W); their argmax is the semantic map
    view: RenderedView  # the primary volume render (features, low-res RGB, depth, opacity)
    stereo: StereoView | None


class SageGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.mapping, cfg.field)
        self.field = FeatureField(cfg.field)
        self.renderer = VolumeRenderer(cfg.render, cfg.field)
        width, w_dim = cfg.field.width, cfg.mapping.hidden
        self.semantic_decoder = UpsamplingDecoder(width, cfg.decoder.channels, w_dim, NUM_CLASSES)
        self.draws_from_field = cfg.translator.source == "field"
        if self.draws_from_field:  # the translator reads the field's colours + the label map: no drawing decoder
            self.translator = DomainTranslator(cfg.translator, NUM_CLASSES, in_channels=3 + NUM_CLASSES + 1,
                                               canvas_size=cfg.output_resolution, clamped_output=True)
        else:
            self.drawing_decoder = UpsamplingDecoder(width, cfg.decoder.channels, w_dim, 3)
            self.translator = DomainTranslator(cfg.translator, NUM_CLASSES)
        self.part_tones = PartTones(w_dim) if cfg.translator.part_tones else None
        self._tones_of_field = False  # `tones_of_field`: plain Python state, as use_translator (no graph break)
        film = (1, cfg.field.layers + 1, cfg.field.width)
        # The truncation centre (w_avg), refreshed by `update_average_code` and saved with the weights.
        self.register_buffer("avg_frequencies", torch.zeros(film))
        self.register_buffer("avg_phases", torch.zeros(film))
        self.register_buffer("avg_codes", torch.zeros(1, w_dim))
        # Stage I trains photos without the translator (as the reference); Stage II switches it on. The switch is
        # plain Python state, so `decode` branches without reading a tensor back (no graph break under
        # torch.compile, no device sync); the buffer only carries it in checkpoints, written on save, read on load.
        self.use_translator = False
        self.register_buffer("translator_active", torch.zeros((), dtype=torch.bool))
        self.register_state_dict_pre_hook(_store_translator_switch)
        self.register_load_state_dict_post_hook(_read_translator_switch)
        self.update_average_code()

    def set_translator(self, active: bool) -> None:
        """Switch the domain translator into the drawing path (Stage II) or out of it (Stage I's photos)."""
        self.use_translator = bool(active)
        self.translator_active.fill_(self.use_translator)

    @property
    def z_dim(self) -> int:
        return self.cfg.mapping.z_dim

    def sample_latents(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.z_dim, generator=generator)

    def code(self, z: torch.Tensor, psi: float = 1.0) -> LatentCode:
        code = self.mapping(z)
        return code if psi == 1.0 else code.truncate(self.average_code(), psi)

    def average_code(self) -> LatentCode:
        return LatentCode(self.avg_frequencies, self.avg_phases, self.avg_codes)

    @torch.no_grad()
    def update_average_code(self, samples: int = 4096, seed: int = 0) -> None:
        """Recompute w_avg from a fixed set of latents, so the same weights always truncate the same way."""
        z = torch.randn(samples, self.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.avg_codes.device)
        code = self.mapping(z)
        self.avg_frequencies.copy_(code.frequencies.mean(0, keepdim=True))
        self.avg_phases.copy_(code.phases.mean(0, keepdim=True))
        self.avg_codes.copy_(code.w.mean(0, keepdim=True))

    def render_view(self, field: Field, cam2world: torch.Tensor, fov_deg: torch.Tensor | float,
                    resolution: int | None = None, **kwargs) -> RenderedView:
        """Volume-render `field` at `resolution` (default: the feature resolution) for cameras cam2world (B, 4, 4),
        fov_deg a scalar or (B,); kwargs go to `VolumeRenderer.render` (jitter, density_noise, generator)."""
        return self.renderer.render(field, cam2world, fov_deg, resolution or self.cfg.render.feature_resolution, **kwargs)

    @property
    def draws_on_surface(self) -> bool:
        """Whether the translator's canvas lies on the head (translator.canvas_space "surface"): `decode` and
        `draw_from_field` then need each pixel's surface coordinates."""
        return self.draws_from_field and self.translator.surface_canvas and self.translator.canvas is not None

    def decode(self, features: torch.Tensor, rgb: torch.Tensor, w: torch.Tensor, scale: int,
               alpha: float = 1.0, surface: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, C, h, w), the field's colours rgb (B, 3, h, w) in [0, 1] and w (B, hidden) -> (drawing
        (B, 3, H, W), semantic logits (B, 19, H, W)), H = W = the resolution of `scale`. The semantics are decoded
        first and condition the translator detached, so the drawing loss cannot bend the semantic map.

        With translator.source "field" the semantic decoder runs up to its own last scale and its logits are
        upsampled (bilinear) to H; the translator draws from rgb and the one-hot label map (`draw_from_field`), and
        a surface canvas is looked up at `surface` (B, 2, h, w), the surface coordinates at the field's resolution.
        With translator.part_tones rgb's face parts (and with skin_tone its skin) are first recoloured in the tones
        drawn for w (part_tones)."""
        if self.draws_from_field:
            top = self.semantic_decoder.scales - 1
            semantic_logits = self.semantic_decoder(features, w, min(scale, top), alpha if scale <= top else 1.0)
            size = features.shape[-1] * 2**scale  # the resolution of `scale` (a head camera's wider picture: more)
            if semantic_logits.shape[-1] != size:
                semantic_logits = F.interpolate(semantic_logits, size=(size, size), mode="bilinear", align_corners=False)
            one_hot = F.one_hot(semantic_logits.argmax(1), NUM_CLASSES).permute(0, 3, 1, 2).to(rgb.dtype)
            if self.part_tones is not None:
                rgb = self.toned(rgb, one_hot, w)
            return self.draw_from_field(rgb, one_hot, surface=surface), semantic_logits
        semantic_logits = self.semantic_decoder(features, w, scale, alpha)
        drawing = self.drawing_decoder(features, w, scale, alpha)
        if self.use_translator:
            drawing = self.translator(drawing, torch.softmax(semantic_logits.detach().float(), dim=1).to(drawing.dtype))
        return drawing, semantic_logits

    @contextmanager
    def tones_of_field(self, on: bool = True) -> Iterator[None]:
        """Within: `toned` reads the part tones off the field's own colours and keeps its skin, as training reads the
        photo's: for a head fitted to a photo (sage_backend.inversion), whose field's colours are that photo's.
        Drawn tones would give a person's portrait another skin."""
        previous, self._tones_of_field = self._tones_of_field, on
        try:
            yield
        finally:
            self._tones_of_field = previous

    def toned(self, rgb: torch.Tensor, one_hot: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The field's colours rgb (B, 3, h, w) in [0, 1] with the face parts painted in the tones drawn for w (B, hidden)
        given the field's skin, or with translator.skin_tone the skin recoloured to one drawn for w first
        (sage_backend.model.part_tones); one_hot (B, 19, H, W) the label map. Within `tones_of_field`: in the
        field's own tones."""
        if self._tones_of_field:
            return paint(rgb, one_hot, measure(rgb, one_hot)[0])
        if self.cfg.translator.skin_tone:
            skin, offsets = self.part_tones(w, self.avg_codes)
            rgb = recolour_skin(rgb, one_hot, skin)
        else:
            offsets = self.part_tones(w, self.avg_codes, skin_colour(rgb, one_hot)[0])[1]
        return paint(rgb, one_hot, offsets)

    def draw_from_field(self, rgb: torch.Tensor, labels: torch.Tensor, window: tuple[int, int, int] | None = None,
                        surface: torch.Tensor | None = None) -> torch.Tensor:
        """Demo v3's drawing path (translator.source "field"): low-res colours rgb (B, 3, h, w) in [0, 1] and a
        one-hot label map (B, 19, H, W) -> drawing (B, 3, H, W) in [-1, 1]. The translator reads the colours
        upsampled, the label map and its edges (`label_edges`: where outlines and part lines go, which a
        network otherwise takes hundreds of steps to find pixel-exactly). Serving passes the field's colours and
        its own label map; Stage II on pairs passes the data's photo (on black, area-downsampled to h) and its
        true label map, so both meet the translator in the same form.

        window (top, left, size) in pixels: draw only that square of the H x W drawing (training on windows
        costs their share of the pixels); the inputs and the canvas are cut at the same place.
        surface (B, 2, h, w): the surface coordinates at the colours' resolution (`surface.surface_uv_map`), upsampled
        like them; needed (ValueError) when the canvas lies on the surface (`draws_on_surface`)."""
        size = labels.shape[-2:]
        tone = F.interpolate(rgb * 2 - 1, size=size, mode="bilinear", align_corners=False)
        image = torch.cat([tone, labels, label_edges(labels)], 1)
        if surface is not None:
            surface = F.interpolate(surface.float(), size=size, mode="bilinear", align_corners=False)
        if window is None:
            return self.translator(image, labels, surface=surface)
        top, left, size = window
        cut = (..., slice(top, top + size), slice(left, left + size))
        surface = surface[cut] if surface is not None else None
        return self.translator(image[cut], labels[cut], canvas_at=(top, left), surface=surface)

    def synthesize(
        self,
        code: LatentCode,
        cam2world: torch.Tensor,
        fov_deg: torch.Tensor | float,
        field: Field | None = None,
        scale: int | None = None,
        alpha: float = 1.0,
        jitter: bool = False,
        density_noise: float = 0.0,
        aux_cam2world: torch.Tensor | None = None,
        aux_mix: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        decoder_dtype: torch.dtype | None = None,
        decode_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
        feature_resolution: int | None = None,
    ) -> GeneratorOutput:
        """The one composition of render -> (stereo) -> decode, used by training (`forward`) and serving
        (`PortraitRenderer`), after EG3D's `synthesis`.

        code: B codes, or one code shared by all B cameras; cam2world (B, 4, 4); fov_deg (degrees) a scalar
        or (B,). field: the `Field` to render, default the FiLM field bound to `code`; the renderer passes
        its cached `FoldedField`. scale: decoder doublings above the feature resolution (default: up to
        output_resolution); alpha: the newest scale's fade-in, 0..1. jitter and density_noise (std, in raw
        density units) are training's sampling noise, drawn from `generator`. aux_cam2world (B, 4, 4): MVCGAN's
        auxiliary cameras, whose features are mixed in by the ratio aux_mix (B,) where the warp lands.
        decoder_dtype: run the 2D decoders under autocast in this dtype (the field keeps the caller's precision).
        decode_fn: a stand-in for `decode` with its signature, e.g. its compiled form (sage_backend.decoding).
        feature_resolution: render the field at this many pixels (default the config's) and decode from there, so the
        outputs are that times 2**scale: a head camera's wider picture (sage_backend.framing) at the training scale.
        """
        scale = self.cfg.max_scale if scale is None else scale
        field = self.field.bind(code) if field is None else field
        render_kwargs = dict(jitter=jitter, density_noise=density_noise, generator=generator)
        # The record_function labels name the stages in a profile (benchmarks/profile_render.py); free otherwise.
        with record_function("sage.volume_render"):
            view = self.render_view(field, cam2world, fov_deg, feature_resolution, **render_kwargs)
            features, stereo = view.features, None
            if aux_cam2world is not None:
                aux = self.render_view(field, aux_cam2world, fov_deg, feature_resolution, **render_kwargs)
                warped, valid = warp_into_view(aux, view.depth, cam2world, aux_cam2world, fov_deg)
                mix = (aux_mix if aux_mix is not None else torch.zeros(cam2world.shape[0], device=features.device)).view(-1, 1, 1, 1)
                features = (1 - mix * valid) * features + mix * valid * warped[:, :-3]
                stereo = StereoView(warped[:, -3:], valid)
        precision = torch.autocast(features.device.type, dtype=decoder_dtype) if decoder_dtype is not None else nullcontext()
        with precision, record_function("sage.decoders"):
            surface = (surface_uv_map(view.depth, view.opacity.clamp(0, 1), cam2world, fov_deg)
                       if self.draws_on_surface else None)
            drawing, semantic_logits = (decode_fn or self.decode)(features, view.rgb, code.w.expand(features.shape[0], -1),
                                                                  scale, alpha, surface)
        return GeneratorOutput(drawing, semantic_logits, view, stereo)

    def forward(self, code: LatentCode, cam2world: torch.Tensor, fov_deg: torch.Tensor | float, **kwargs) -> GeneratorOutput:
        """Training's call: `synthesize` with the differentiable FiLM field (see there for the arguments)."""
        return self.synthesize(code, cam2world, fov_deg, **kwargs)


def label_edges(labels: torch.Tensor) -> torch.Tensor:
    """A one-hot label map (B, C, H, W) -> (B, 1, H, W): 1 where a pixel's class differs from its right or lower
    neighbour's, else 0 (the last row and column compare with nothing)."""
    across = (labels[..., :, 1:] != labels[..., :, :-1]).any(1, keepdim=True)
    down = (labels[..., 1:, :] != labels[..., :-1, :]).any(1, keepdim=True)
    edges = F.pad(across, (0, 1)) | F.pad(down, (0, 0, 0, 1))
    return edges.to(labels.dtype)


def _store_translator_switch(module: SageGenerator, prefix: str, keep_vars: bool) -> None:
    """state_dict pre-hook: the buffer mirrors the Python switch in every saved checkpoint."""
    module.translator_active.fill_(module.use_translator)


def _read_translator_switch(module: SageGenerator, incompatible_keys) -> None:
    """load_state_dict post-hook: the loaded buffer sets the Python switch (old checkpoints included)."""
    module.use_translator = bool(module.translator_active)


def warp_into_view(
    source: RenderedView, target_depth: torch.Tensor, target_c2w: torch.Tensor, source_c2w: torch.Tensor, fov_deg: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample the source view's features+RGB at the pixels where the target view's surface points land.

    Returns (B, C+3, h, w) warped values and a (B, 1, h, w) mask of points that project inside the source image.
    """
    b, _, h, w = source.features.shape
    origins, dirs = camera_rays(target_c2w, fov_deg, h, w)
    points = origins + dirs * target_depth.reshape(b, -1, 1)
    xy, depth = project_points(points, source_c2w, fov_deg)
    grid = image_coords_to_grid(xy).reshape(b, h, w, 2)
    values = torch.cat([source.features, source.rgb], dim=1)
    warped = F.grid_sample(values, grid.to(values.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    inside = (xy.abs() <= 1).all(-1) & (depth > 0)
    return warped, inside.reshape(b, 1, h, w).to(values.dtype)
