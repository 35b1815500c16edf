"""GradCache on 2 gloo ranks (embeddings all-gathered, gradients averaged by hand) equals 1 process × 2B.

Checked with hard negatives in the batch, with trainable towers and with locked towers whose cached
pooled features leave only the heads to embed; and a short 2-rank GradCache training run.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tests.ranks import as_rank, free_port

from xmodal.config import load_config
from xmodal.models.factory import build_model
from xmodal.train import distributed
from xmodal.train.gradcache import gradcache_backward
from xmodal.train.negatives import WithNegatives, contrastive_loss

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"
N, K, MICRO = 16, 2, 4  # global batch, negatives per image, micro-batch size


def _model(locked: bool) -> torch.nn.Module:
    lock = "0" if locked else "-1"
    cfg = load_config(
        RECIPE, [f"model.image_encoder.unlocked_blocks={lock}", f"model.text_encoder.unlocked_blocks={lock}"]
    )
    torch.manual_seed(0)
    return build_model(cfg.model).train()


def _inputs(model: torch.nn.Module, locked: bool) -> dict[str, object]:
    """The whole batch: images/texts (or pooled tower features) and K negative slots per sample."""
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(N, K, generator=g) > 0.3  # (N, K): padding slots hold "" / zeros
    negs = [
        f"negative {i} of a {'blue ' * (i % 3)}thing" if m else "" for i, m in enumerate(mask.reshape(-1))
    ]
    if locked:
        pooled_img = model.image_encoder.pooled_dim
        pooled_txt = model.text_encoder.pooled_dim
        return {
            "image_pooled": torch.randn(N, pooled_img, generator=g),
            "text_pooled": torch.randn(N, pooled_txt, generator=g),
            "negative_pooled": torch.randn(N * K, pooled_txt, generator=g) * mask.reshape(-1, 1),
            "negative_mask": mask,
        }
    texts = [f"emoji number {i} with {'red ' * (i % 3)}colour" for i in range(N)]
    return {
        "image": torch.randn(N, 3, 32, 32, generator=g),
        "text": texts,
        "negative_text": negs,
        "negative_mask": mask,
    }


def _slice(inputs: dict[str, object], lo: int, hi: int) -> dict[str, object]:
    """Samples lo:hi and their negative slots lo·K … hi·K."""
    out: dict[str, object] = {}
    for key, value in inputs.items():
        neg = key in ("negative_text", "negative_pooled")
        out[key] = value[lo * K : hi * K] if neg else value[lo:hi]  # type: ignore[index]
    return out


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full gradients (gathered when FSDP shards them)."""
    out = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad
            out[n] = (g.full_tensor() if hasattr(g, "full_tensor") else g).clone()
    return out


def _gradcache_worker(rank: int, world: int, out: str, locked: bool, fsdp: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        ctx = distributed.DistContext(rank, world)
        model = _model(locked)
        if fsdp:
            from xmodal.train.fsdp import shard_clip

            shard_clip(model)
        net = WithNegatives(model)
        b = N // world
        mine = _slice(_inputs(model, locked), rank * b, (rank + 1) * b)
        parts = [_slice(mine, i, i + MICRO) for i in range(0, b, MICRO)]
        loss = gradcache_backward(model, parts, contrastive_loss, forward=net)
        if not fsdp:  # FSDP2's reduce-scatter already averaged them
            distributed.average_gradients(ctx, [p for p in model.parameters() if p.requires_grad])
        torch.save({"loss": loss, "grads": _grads(model)}, f"{out}/rank{rank}.pt")
    finally:
        dist.barrier()
        dist.destroy_process_group()


def _check(tmp_path: Path, locked: bool, fsdp: bool = False) -> None:
    mp.spawn(_gradcache_worker, args=(2, str(tmp_path), locked, fsdp), nprocs=2, join=True)
    model = _model(locked)
    out = WithNegatives(model)(**_inputs(model, locked))  # one process, the whole batch, no micro-batches
    loss = contrastive_loss(**out)
    loss.backward()
    ref = _grads(model)
    assert len(ref) == sum(p.requires_grad for p in model.parameters())
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-6)
        assert set(got["grads"]) == set(ref)
        for name, g in ref.items():
            assert (got["grads"][name] - g).abs().max() <= 1e-5 * g.abs().max().clamp_min(1e-12), name


def test_two_ranks_with_micro_batches_match_one_process(tmp_path: Path) -> None:
    _check(tmp_path, locked=False)


def test_fsdp2_with_micro_batches_matches_one_process(tmp_path: Path) -> None:
    _check(tmp_path, locked=False, fsdp=True)


def test_cached_frozen_towers_embed_only_the_heads(tmp_path: Path) -> None:
    model = _model(locked=True)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {
        "image_head",
        "text_head",
        "log_logit_scale",
    }
    _check(tmp_path, locked=True)


TRAIN = [
    "train.steps=3",
    "train.eval_every=0",
    "train.ckpt_every=3",
    "data.batch_size=16",
    "eval.max_images=32",
    "data.hard_negatives.generators=[swap_relation,shuffle_words]",
    "data.hard_negatives.per_image=2",
]


def _train_worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    as_rank(rank, world, port)
    from xmodal.train.loop import Trainer

    try:
        trainer = Trainer(
            load_config(RECIPE, [*TRAIN, "train.micro_batch_size=4"]), Path(run_dir), progress=False
        )
        trainer.fit()
        torch.save(
            {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, f"{out}/rank{rank}.pt"
        )
    finally:
        distributed.teardown()


def test_two_rank_gradcache_training_with_negatives_ends_identical(tmp_path: Path) -> None:
    mp.spawn(_train_worker, args=(2, free_port(), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k, v in r0.items():
        assert torch.equal(v, r1[k]), k  # averaged gradients keep the ranks in lock-step
    from xmodal.train.loop import Trainer

    single = Trainer(load_config(RECIPE, TRAIN), tmp_path / "single", progress=False)  # 1 rank, whole batches
    single.fit()
    moved = 0
    initial = _model(locked=False).state_dict()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-4, atol=1e-5, msg=k)
        moved += not torch.equal(v, initial[k])
    assert moved > 10  # the run trained
