"""Residual VQ: id ranges, k-means init, EMA updates, dead-code restart, quantizer dropout, checkpoints."""

import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.audio import rvq as rvq_module
from videopoet.tokenizers.audio.rvq import CodesError, ResidualVQ, RVQConfig, codebook_usage


def make(**kw) -> ResidualVQ:
    base = dict(dim=8, levels=3, codebook_size=16, kmeans_iters=5)
    base.update(kw)
    return ResidualVQ(RVQConfig(**base))


def latents(b=4, d=8, f=50, seed=0) -> torch.Tensor:
    return torch.randn(b, d, f, generator=torch.Generator().manual_seed(seed))


def test_codes_shape_and_range_per_level():
    torch.manual_seed(0)
    q = make().train()
    out = q(latents())
    assert out.codes.shape == (4, 3, 50) and out.codes.dtype == torch.int64
    assert out.quantized.shape == (4, 8, 50)
    codes = q.eval().encode(latents(seed=1))
    assert codes.shape == (4, 3, 50)
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    for level in range(3):
        assert 0 <= int(out.codes[:, level].min()) and int(out.codes[:, level].max()) < 16
    assert set(out.stats) >= {"usage/level0", "perplexity/level2", "levels_mean"}


def test_kmeans_init_happens_once(monkeypatch):
    calls = []
    real = rvq_module.kmeans

    def counting(x, k, iters):
        calls.append(x.shape)
        return real(x, k, iters)

    monkeypatch.setattr(rvq_module, "kmeans", counting)
    torch.manual_seed(0)
    q = make()
    q.eval()(latents())  # eval never initialises
    assert not bool(q.initialized) and not calls
    q.train()(latents())
    assert bool(q.initialized) and len(calls) == 3  # once per level, on the first training batch
    q(latents(seed=2))
    assert len(calls) == 3


def test_kmeans_init_fits_first_batch():
    torch.manual_seed(0)
    centers = torch.randn(16, 8) * 5
    x = (centers[torch.arange(16).repeat(20)] + 0.01 * torch.randn(320, 8)).T[None]  # [1, 8, 320]
    q = make(levels=1, ema_decay=0.99).train()
    q(x)
    # every center has a code within the noise level
    d = torch.cdist(centers, q.codebooks[0]).min(1).values
    assert (d < 0.5).sum() >= 14  # k-means can merge a pair of clusters; most are found exactly


def test_ema_moves_codebooks_toward_data():
    torch.manual_seed(0)
    centers = torch.tensor([[4.0, 0], [-4, 0], [0, 4], [0, -4]])
    q = make(
        dim=2, levels=1, codebook_size=4, ema_decay=0.5, quantizer_dropout=0.0, dead_code_threshold=0.0
    ).train()

    def batch(shift: float) -> torch.Tensor:
        pts = centers[torch.arange(4).repeat(50)] + shift + 0.05 * torch.randn(200, 2)
        return pts.T[None]

    q.init_codebooks(batch(0.0)[0].T)
    before = torch.cdist(centers + 1.0, q.codebooks[0]).min(1).values.mean()
    for _ in range(10):
        q(batch(1.0))
    after = torch.cdist(centers + 1.0, q.codebooks[0]).min(1).values.mean()
    assert before > 1.0 and after < 0.1


def test_dead_codes_restart_from_batch_vectors():
    torch.manual_seed(0)
    q = make(dim=4, levels=1, codebook_size=8, dead_code_threshold=1.0, quantizer_dropout=0.0).train()
    x = torch.randn(2, 4, 30)
    rows = x.transpose(1, 2).reshape(-1, 4)
    with torch.no_grad():
        q.codebooks[0, :4] = torch.randn(4, 4) * 0.1
        q.codebooks[0, 4:] = 1e3  # never the nearest code
        q.cluster_size[0, :4] = 100.0
        q.cluster_size[0, 4:] = 0.0
        q.embed_sum[0] = q.codebooks[0] * q.cluster_size[0, :, None]
        q.initialized.fill_(True)
    q(x)
    for code in q.codebooks[0, 4:]:
        assert torch.isclose(rows, code[None], atol=1e-6).all(1).any(), (
            "dead code not restarted from the batch"
        )
    assert torch.all(q.cluster_size[0, 4:] == 1.0)
    assert torch.all(q.cluster_size[0, :4] > 1.0)  # live codes kept
    assert (q.codebooks[0, :4].abs() < 100).all()


def test_quantizer_dropout_uses_fewer_levels_in_training_only():
    torch.manual_seed(0)
    q = make(quantizer_dropout=1.0).train()
    q(latents(b=64, f=5))  # k-means init
    books = q.codebooks.clone()  # the forward quantizes with the codebooks as they were before its update
    out = q(latents(b=64, f=5, seed=1))
    n = out.n_levels
    assert n.min() >= 1 and n.max() <= 3 and n.min() < 3 and len(set(n.tolist())) > 1
    for i in range(64):  # each sample's quantized latent is the sum of exactly its first n codes
        expected = sum(books[level][out.codes[i, level]] for level in range(int(n[i]))).T
        assert torch.allclose(out.quantized[i], expected, atol=1e-5)
    q.eval()
    assert (q(latents(b=64, f=5)).n_levels == 3).all()
    q.train()
    assert (q(latents(b=8, f=5), n_levels=2).n_levels == 2).all()  # explicit n_levels: no dropout


def test_fewer_levels_give_coarser_reconstruction():
    torch.manual_seed(0)
    z = latents(b=4, f=100)
    q = make(levels=4, codebook_size=16, kmeans_iters=10).train()
    q(z)  # k-means init on this batch
    q.eval()
    errors = []
    for k in range(1, 5):
        codes = q.encode(z, n_levels=k)
        assert codes.shape == (4, k, 100)
        zq = q.decode(codes)
        assert torch.allclose(zq, q(z, n_levels=k).quantized, atol=1e-5)
        errors.append(float((zq - z).pow(2).mean()))
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0]


def test_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    q = make().train()
    z = latents().requires_grad_(True)
    out = q(z)
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))
    z.grad = None
    out = q(z)
    assert out.commitment_loss > 0
    out.commitment_loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_eval_is_deterministic_and_does_not_update():
    torch.manual_seed(0)
    q = make().train()
    q(latents())
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    a, b = q(latents(seed=3)), q(latents(seed=3))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.quantized, b.quantized)
    q.train()
    q.encode(latents(seed=3))  # encode never updates, even in training mode
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_state_dict_round_trip_restores_codes(monkeypatch):
    torch.manual_seed(0)
    q = make().train()
    for s in range(3):
        q(latents(seed=s))
    state = q.state_dict()
    assert {"codebooks", "cluster_size", "embed_sum", "initialized"} <= set(state)
    fresh = make()
    fresh.load_state_dict(state)
    z = latents(seed=9)
    assert torch.equal(q.eval().encode(z), fresh.eval().encode(z))
    monkeypatch.setattr(rvq_module, "kmeans", lambda *a: pytest.fail("re-initialised after loading"))
    fresh.train()(z)


def test_bad_codes_are_user_errors():
    q = make().eval()
    with pytest.raises(CodesError, match=r"\[0, 16\)"):
        q.decode(torch.full((1, 2, 5), 16))
    with pytest.raises(CodesError, match="levels"):
        q.decode(torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(CodesError, match="integers"):
        q.decode(torch.zeros(1, 2, 5))
    with pytest.raises(UserError):
        q.encode(latents(), n_levels=0)
    assert q.decode(torch.zeros(2, 1, 5, dtype=torch.long)).shape == (2, 8, 5)


def test_codebook_usage():
    codes = torch.stack([torch.arange(16).repeat(4), torch.zeros(64, dtype=torch.long)])[None]  # [1, 2, 64]
    usage = codebook_usage(codes, 16)
    assert usage[0]["fraction_used"] == 1.0 and abs(usage[0]["perplexity"] - 16) < 1e-6
    assert usage[1]["fraction_used"] == 1 / 16 and abs(usage[1]["perplexity"] - 1) < 1e-6


def test_config_validation():
    with pytest.raises(ValueError, match="ema_decay"):
        RVQConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="quantizer_dropout"):
        RVQConfig(quantizer_dropout=1.5)
    with pytest.raises(ValueError, match="codebook_size"):
        RVQConfig(codebook_size=1)
