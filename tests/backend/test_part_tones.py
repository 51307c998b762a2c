"""sage_backend/model/part_tones.py: the tones a "field" translator reads in each face part, drawn per head."""
from __future__ import annotations

import torch

from sage_backend.model.part_tones import TONED_PARTS, PartTones


def test_drawn_tones_follow_the_photos_spread_and_their_skin() -> None:
    """Fitted to offsets that follow the skin (the lips: all of it) plus noise, the draws over random heads have
    the photos' mean and spread given the skin, and a darker skin moves them as the photos' regression does."""
    gen = torch.Generator().manual_seed(0)
    dims = 3 * len(TONED_PARTS)
    skins = 0.3 + 0.1 * torch.randn(400, 3, generator=gen)
    offsets = 0.05 * torch.randn(400, dims, generator=gen)
    offsets[:, 9:] += -0.5 * (skins - 0.3)  # the mouth's offsets: half the skin's deviation, opposite
    tones = PartTones(w_dim=32)
    codes = torch.randn(8000, 32, generator=gen) @ torch.randn(32, 32, generator=gen)  # anisotropic, as a mapping's w
    w_avg = codes.mean(0, keepdim=True)
    tones.fit(offsets.view(-1, len(TONED_PARTS), 3), skins, codes, w_avg)
    at = torch.full((4000, 3), 0.3)
    drawn = tones(codes[:4000], w_avg, at)[1].view(4000, -1)  # the fit's own heads: g is white over them
    assert drawn.mean(0).abs().max() < 0.01 and ((drawn.std(0) - 0.05).abs() < 0.01).all()
    darker = tones(codes[:4000], w_avg, at - 0.1)[1].view(4000, -1)
    assert torch.allclose((darker - drawn)[:, 9:].mean(0), torch.full((3,), 0.05), atol=0.01)
    assert (darker - drawn)[:, :9].mean(0).abs().max() < 0.01
    skins_drawn = tones(codes[:4000], w_avg)[0]  # drawn, not given: the photos' skin colours' spread
    assert (skins_drawn.mean(0) - 0.3).abs().max() < 0.01 and ((skins_drawn.std(0) - 0.1).abs() < 0.01).all()


def test_recolouring_the_skin_scales_the_skin_classes_and_leaves_the_rest() -> None:
    import torch.nn.functional as F

    from sage_backend.labels import LABEL_IDS, NUM_CLASSES
    from sage_backend.model.part_tones import recolour_skin, skin_colour

    labels = torch.full((1, 16, 16), LABEL_IDS["hair"])
    labels[:, 4:12, 4:12] = LABEL_IDS["skin"]
    one_hot = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
    rgb = torch.full((1, 3, 16, 16), 0.5)
    rgb[:, :, 4:12, 4:12] = 0.2
    rgb[:, :, 5, 5] = 0.1  # a shadow on the skin keeps its share of the skin's tone
    wanted = torch.tensor([[0.4, 0.3, 0.2]])
    recoloured = recolour_skin(rgb, one_hot, wanted)
    assert torch.allclose(skin_colour(recoloured, one_hot)[0], wanted, atol=1e-6)
    assert torch.allclose(recoloured[0, :, 5, 5], rgb[0, :, 5, 5] * wanted[0] / skin_colour(rgb, one_hot)[0][0])
    assert torch.equal(recoloured[..., :4, :], rgb[..., :4, :])  # the hair as it was


def test_a_head_fitted_to_a_photo_keeps_its_field_tones_and_a_seed_gets_drawn_ones() -> None:
    """A pencil portrait of a person (an inverted photo: a LatentCode) was drawn with a skin tone drawn for its w,
    not the person's. The renderer now draws a fitted code in its field's own tones (`tones_of_field`), a seed in
    drawn ones; decode inside `tones_of_field` is `draw_from_field` of the parts painted in the field's tones."""
    import math

    import numpy as np
    import torch.nn.functional as F

    from sage_backend.cameras import Camera
    from sage_backend.config import preset
    from sage_backend.inference import PortraitRenderer
    from sage_backend.model.generator import SageGenerator
    from sage_backend.model.part_tones import measure, paint

    torch.manual_seed(0)
    g = SageGenerator(preset("tiny-field-tones")).eval()
    g.set_translator(True)
    with torch.no_grad():
        g.field.density_head.weight.mul_(3000.0)
        g.part_tones.skin_chol.copy_(0.3 * torch.eye(3))
        g.part_tones.mean.fill_(0.3)
        for out in g.semantic_decoder.to_output:  # an untrained decoder labels no skin: make it all skin
            out.bias[1] = 100.0
    renderer = PortraitRenderer(g, "cpu")
    z = renderer.latent(seed=1)
    code, _ = renderer.code(z, 1.0)
    camera = [Camera.orbit(math.pi / 2, math.pi / 2)]
    seeded, fitted = (next(renderer.render(head, camera, psi=1.0)).drawing for head in (z, code))
    assert not np.array_equal(seeded, fitted)  # the same head: drawn tones for the seed, its field's for the code
    size, gen = g.cfg.render.feature_resolution, torch.Generator().manual_seed(0)
    features, rgb = torch.randn(1, g.cfg.field.width, size, size, generator=gen), torch.rand(1, 3, size, size, generator=gen)
    surface = 400 * torch.rand(1, 2, size, size, generator=gen)
    with torch.no_grad(), g.tones_of_field():
        drawing, logits = g.decode(features, rgb, code.w, g.cfg.max_scale, surface=surface)
        one_hot = F.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2).float()
        assert torch.equal(drawing, g.draw_from_field(paint(rgb, one_hot, measure(rgb, one_hot)[0]), one_hot, surface=surface))
    assert not g._tones_of_field  # left as it was
